"""Features files: ``features`` (N x D float) and ``index`` (store image index per row), .npz or HDF5."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError

H5_SUFFIXES = (".h5", ".hdf5")


def load_features(path) -> tuple[np.ndarray, np.ndarray]:
    """Read (features, index) from an .npz or HDF5 file; one-line errors for what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ReidkitError(f"features file {path} does not exist")
    try:
        if path.suffix.lower() in H5_SUFFIXES:
            import h5py

            with h5py.File(path, "r") as h5:
                missing = [k for k in ("features", "index") if k not in h5]
                if missing:
                    raise ReidkitError(f"features file {path} has no dataset {missing[0]!r} (expected 'features' N x D and 'index' N)")
                return h5["features"][()], h5["index"][()]
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("features", "index") if k not in data.files]
            if missing:
                raise ReidkitError(f"features file {path} has no array {missing[0]!r} (expected 'features' N x D and 'index' N)")
            return data["features"], data["index"]
    except ReidkitError:
        raise
    except Exception as exc:  # a truncated or foreign file: say which and why, in one line
        raise ReidkitError(f"cannot read features file {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           "expected an .npz or .h5 with 'features' and 'index'") from None


def save_features(path, features: np.ndarray, index: np.ndarray, flip: bool | None = None):
    """Write an .npz (or .h5) features file atomically: it appears complete or not at all.

    ``flip`` (when known): whether the features were averaged with the mirrored images', kept as ``flip``
    (an npz array, an HDF5 attribute); readers ignore it."""
    from reidkit.store.atomic import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, replace=True) as partial:
        if path.suffix.lower() in H5_SUFFIXES:
            import h5py

            with h5py.File(partial, "w") as h5:
                h5["features"] = features
                h5["index"] = index
                if flip is not None:
                    h5.attrs["flip"] = bool(flip)
        else:
            with open(partial, "wb") as fh:
                np.savez(fh, features=features, index=index, **({} if flip is None else {"flip": np.bool_(flip)}))


def check_features(features, index, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate rows against a store of ``n_images``; return (float features, row of each store image or -1)."""
    features = np.asarray(features)
    index = np.asarray(index)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ReidkitError(f"features must be a non-empty N x D array, got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise ReidkitError(f"features must be real numbers, got dtype {features.dtype}")
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ReidkitError(f"index must be a 1-D integer array of store image indices, got shape {index.shape} dtype {index.dtype}")
    if len(index) != len(features):
        raise ReidkitError(f"features has {len(features)} rows but index has {len(index)} entries; they must match")
    bad = np.flatnonzero((index < 0) | (index >= n_images))
    if len(bad):
        raise ReidkitError(f"index holds {len(bad)} value(s) outside the store's 0..{n_images - 1} (first: row {bad[0]} = {index[bad[0]]})")
    uniq, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ReidkitError(f"index lists {len(dup)} store image(s) more than once (first: {dup[0]}); one row per image expected")
    features = features.astype(np.float64 if features.dtype == np.float64 else np.float32, copy=False)
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ReidkitError(f"features hold NaN or infinite values in {int((~finite).sum())} row(s) (first: row {row}, store index {index[row]})")
    row_of = np.full(n_images, -1, np.int64)
    row_of[index] = np.arange(len(index))
    return features, row_of
