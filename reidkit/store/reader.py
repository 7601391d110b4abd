"""Reading a store: metadata in memory, image bytes on demand, safe in DataLoader workers."""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from reidkit.adapter import EvalProtocol
from reidkit.errors import StoreError
from reidkit.store.imagecodec import ImageDecodeError, decode_gray, decode_rgb
from reidkit.store.schema import BOOL_COLUMNS, FORMAT_NAME, INT_COLUMNS, PARTS_SUFFIX, SCHEMA_VERSION, STR_COLUMNS


def parts_dir_of(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTS_SUFFIX)


def _indices(values, n: int, what: str) -> np.ndarray:
    """Store image indices read from the file: a 1-D integer array within 0..n-1, else ValueError."""
    values = np.asarray(values)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise ValueError(f"{what} is not a list of image indices")
    if values.size and (values.min() < 0 or values.max() >= n):
        raise ValueError(f"{what} holds image indices outside 0..{n - 1}")
    return values


class Store:
    """A read-only view of one store file and its published sidecar parts.

    The HDF5 handle is opened lazily and re-opened after a fork, so a Store
    can be handed to PyTorch DataLoader workers (open it in each worker,
    never share a handle across processes).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._h5 = None
        self._pid = None
        self._check()

    # -- file handle -----------------------------------------------------------
    def _check(self):
        import h5py

        if not self.path.exists():
            raise StoreError(f"store {self.path} does not exist")
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder; expected a store file written by 'reidkit adapt'")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError:
            raise StoreError(f"{self.path} is not a reidkit store (not an HDF5 file, or truncated)") from None
        try:
            with h5:
                if h5.attrs.get("format") != FORMAT_NAME:
                    raise StoreError(f"{self.path} is an HDF5 file but not a reidkit store (no '{FORMAT_NAME}' format attribute)")
                version = int(h5.attrs.get("schema_version", -1))
                if version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} has store schema version {version}; this reidkit reads version {SCHEMA_VERSION} "
                        "(re-create the store with 'reidkit adapt')"
                    )
                self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
                self._load_columns(h5)
                for name in ("dataset", "fingerprint"):
                    if not isinstance(self.attrs.get(name), str):
                        raise ValueError(f"attribute '{name}' missing or not text")
                self.settings, self.protocols, self.skipped  # parsed now: damaged JSON fails here, not later
        except StoreError:
            raise
        except Exception as exc:  # h5py/HDF5 report damage as OSError, KeyError, RuntimeError, ValueError, ...
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise StoreError(f"{self.path} is a damaged reidkit store ({type(exc).__name__}: {detail}); "
                             "re-create it with 'reidkit adapt'") from None

    def _load_columns(self, h5):
        images = h5["images"]
        cols = {}
        for name in INT_COLUMNS:
            cols[name] = images[name][()]
        for name in BOOL_COLUMNS:
            cols[name] = images[name][()].astype(bool)
        for name in STR_COLUMNS:
            cols[name] = np.array(images[name].asstr()[()], dtype=object)
        lengths = {name: np.shape(col) for name, col in cols.items()}
        n = len(cols["pid"])
        if any(shape != (n,) for shape in lengths.values()):
            raise ValueError(f"image columns differ in shape: {lengths}")
        self.columns = cols
        self.splits = {name: _indices(ds[()], n, f"split '{name}'") for name, ds in h5["splits"].items()}
        self.base_masks = {}
        for name, group in h5["masks"].items():
            self.base_masks[name] = {
                "labels": json.loads(group.attrs["labels"]),
                "clothing": json.loads(group.attrs["clothing"]),
                "masker": group.attrs.get("masker", "dataset"),
                "index": _indices(group["index"][()], n, f"mask set '{name}'"),
            }

    @property
    def h5(self):
        """The HDF5 handle of this process (opened on first use, re-opened after fork)."""
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self):
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_pid"] = None
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metadata --------------------------------------------------------------
    def __len__(self):
        return len(self.columns["pid"])

    @property
    def dataset(self) -> str:
        return self.attrs["dataset"]

    @property
    def fingerprint(self) -> str:
        return self.attrs["fingerprint"]

    @cached_property
    def settings(self) -> dict:
        return json.loads(self.attrs.get("settings", "{}"))

    @cached_property
    def protocols(self) -> list[EvalProtocol]:
        return [EvalProtocol.from_dict(p) for p in json.loads(self.attrs.get("protocols", "[]"))]

    @cached_property
    def skipped(self) -> list[dict]:
        return json.loads(self.attrs.get("skipped", "[]"))

    def split(self, name) -> np.ndarray:
        try:
            return self.splits[name]
        except KeyError:
            raise StoreError(f"store {self.path} has no split '{name}' (splits: {', '.join(sorted(self.splits))})") from None

    @property
    def image_paths(self) -> np.ndarray:
        """Source path of each image relative to the dataset root (``store.path`` is the store file)."""
        return self.columns["path"]

    def __getattr__(self, name):
        # store.pid, store.camera, ... read the per-image columns
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(name)

    # -- images ----------------------------------------------------------------
    def describe_image(self, index: int) -> str:
        """'image INDEX (PATH) of store FILE': how errors name one stored image."""
        paths = self.columns["path"]
        path = paths[int(index)] if 0 <= int(index) < len(paths) else "?"
        return f"image {int(index)} ({path}) of store {self.path}"

    def image_bytes(self, index: int) -> bytes:
        try:
            return self.h5["images/bytes"][int(index)].tobytes()
        except (OSError, KeyError) as exc:  # a store damaged after it was written
            raise ImageDecodeError(f"cannot read {self.describe_image(index)}: {exc}; expected a store written by "
                                   "'reidkit adapt' (re-create it)") from None

    def image(self, index: int) -> np.ndarray:
        """HxWx3 uint8 RGB."""
        data = self.image_bytes(index)
        try:
            return decode_rgb(data)
        except ValueError as exc:
            raise ImageDecodeError(f"cannot decode {self.describe_image(index)}: {exc}; expected an image "
                                   "'reidkit adapt' accepted (re-create the store)") from None

    # -- sidecar parts (masks, prompts, generated runs) -------------------------
    @property
    def parts_dir(self) -> Path:
        return parts_dir_of(self.path)

    def mask_sets(self) -> dict:
        """Name -> MaskSet: masks shipped in the store plus published mask files in the sidecar."""
        from reidkit.store.masks import MaskSet, list_mask_files

        sets = {name: MaskSet.from_store(self, name) for name in self.base_masks}
        for name, path in list_mask_files(self).items():
            sets[name] = MaskSet.from_file(path, self)
        return sets

    def runs(self) -> dict:
        """Name -> GeneratedRun for every generated run published in the sidecar."""
        from reidkit.store.runs import GeneratedRun, list_runs

        return {name: GeneratedRun(path, self) for name, path in list_runs(self).items()}

    def run(self, name):
        runs = self.runs()
        if name not in runs:
            known = ", ".join(sorted(runs)) or "none"
            raise StoreError(f"store {self.path} has no generated run '{name}' (runs: {known})")
        return runs[name]

    def mask_label_map(self, name, index) -> np.ndarray:
        return decode_gray(self.h5[f"masks/{name}/bytes"][int(index)].tobytes())


def open_store(path) -> Store:
    return Store(path)
