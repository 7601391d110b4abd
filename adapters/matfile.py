"""Reading MATLAB ``.mat`` variables: level-5 files with SciPy, v7.3 (HDF5) files with h5py.

CUHK03's 767/700 split files (``cuhk03_new_protocol_config_*.mat``) are
level-5 MAT-files, read with ``scipy.io.loadmat`` as the field's toolkits
read them; ``cuhk-03.mat`` and any split file re-saved with ``-v7.3`` are
HDF5, read with h5py. Every failure is a ``ValueError`` naming what was wrong.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def is_hdf5_mat(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(10) == b"MATLAB 7.3"


def load_mat(path: Path, names: tuple[str, ...]) -> dict:
    """The named variables of a MAT-file (level 5 or v7.3), as numpy arrays (cells: object arrays)."""
    path = Path(path)
    found = _load_hdf5(path, names) if is_hdf5_mat(path) else _load_level5(path, names)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"variables {', '.join(missing)} not found")
    return found


def _load_level5(path: Path, names) -> dict:
    import scipy.io

    try:
        data = scipy.io.loadmat(path, variable_names=list(names), chars_as_strings=True)
    except NotImplementedError as exc:  # scipy's answer to a v7.3 file without our header check's marker
        raise ValueError(str(exc)) from None
    except Exception as exc:  # scipy raises MatReadError, TypeError, zlib.error ... for damaged files
        raise ValueError(f"not a readable MATLAB level-5 MAT-file ({type(exc).__name__}: {exc})") from None
    return {k: v for k, v in data.items() if k in names}


def _load_hdf5(path: Path, names) -> dict:
    import h5py

    found = {}
    with h5py.File(path, "r") as h5:
        for name in names:
            if name in h5:
                found[name] = _hdf5_value(h5, h5[name])
    return found


def _hdf5_value(h5, ds):
    """MATLAB stores arrays transposed; cells are object references; chars are uint16 codes."""
    cls = ds.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    value = ds[()]
    if cls == "cell":
        out = np.empty(value.shape, dtype=object)
        for index, ref in np.ndenumerate(value):
            out[index] = _hdf5_value(h5, h5[ref])
        return out.T
    if cls == "char":
        return "".join(map(chr, np.asarray(value).T.ravel()))
    return np.asarray(value).T
