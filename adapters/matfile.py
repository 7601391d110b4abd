"""Reading MATLAB ``.mat`` variables without SciPy: level-5 files (numeric, char and cell arrays) and v7.3 (HDF5).

CUHK03's 767/700 split files (``cuhk03_new_protocol_config_*.mat``) are
level-5 MAT-files; toolkits read them with ``scipy.io.loadmat``. Only the
parts of the format those files use are implemented; anything else raises
``ValueError`` naming what was found. Format: MathWorks, "MAT-File Format"
(level 5): a 128-byte header, then tagged data elements, optionally zlib-compressed.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

MI_MATRIX, MI_COMPRESSED = 14, 15
MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
CELL, STRUCT, CHAR, SPARSE = 1, 2, 4, 5
NUMERIC_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
HEADER = 128


def is_hdf5_mat(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(10) == b"MATLAB 7.3"


def load_mat(path: Path, names: tuple[str, ...]) -> dict:
    """The named variables of a MAT-file (level 5 or v7.3), as numpy arrays (cells: object arrays of str/arrays)."""
    path = Path(path)
    if is_hdf5_mat(path):
        return _load_hdf5(path, names)
    data = path.read_bytes()
    if len(data) < HEADER or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB level-5 MAT-file (no header)")
    endian = "<" if data[126:128] == b"IM" else ">"
    found, pos = {}, HEADER
    while pos + 8 <= len(data):
        mtype, payload, pos = _element(data, pos, endian)
        if mtype == MI_COMPRESSED:
            inner = zlib.decompress(payload)
            mtype, payload, _ = _element(inner, 0, endian)
        if mtype == MI_MATRIX and payload:
            name, value = _matrix(payload, endian)
            if name in names:
                found[name] = value
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"variables {', '.join(missing)} not found")
    return found


def _element(data: bytes, pos: int, endian: str):
    """(type, payload, next position) of the data element at ``pos``."""
    first, second = struct.unpack_from(endian + "II", data, pos)
    if first >> 16:  # small data element: size and type packed in one word, data in the next 4 bytes
        size, mtype = first >> 16, first & 0xFFFF
        return mtype, data[pos + 4 : pos + 4 + size], pos + 8
    mtype, size = first, second
    start = pos + 8
    end = start + size
    if end > len(data):
        raise ValueError("truncated MAT-file")
    padded = end if mtype == MI_COMPRESSED else start + ((size + 7) // 8) * 8
    return mtype, data[start:end], padded


def _numbers(mtype: int, payload: bytes, endian: str) -> np.ndarray:
    if mtype not in MI_TYPES:
        raise ValueError(f"unsupported MAT data type {mtype}")
    return np.frombuffer(payload, dtype=endian + MI_TYPES[mtype])


def _matrix(payload: bytes, endian: str):
    """(name, value) of a miMATRIX element's payload."""
    mtype, flags, pos = _element(payload, 0, endian)
    cls = int(_numbers(mtype, flags, endian)[0]) & 0xFF
    mtype, dims, pos = _element(payload, pos, endian)
    shape = tuple(int(d) for d in _numbers(mtype, dims, endian))
    mtype, raw_name, pos = _element(payload, pos, endian)
    name = raw_name.decode("ascii", errors="replace")
    if cls == CELL:
        cells = []
        for _ in range(int(np.prod(shape))):
            mtype, inner, pos = _element(payload, pos, endian)
            cells.append(_matrix(inner, endian)[1] if inner else np.zeros((0, 0)))
        value = np.empty(len(cells), dtype=object)
        value[:] = cells
        return name, value.reshape(shape, order="F")
    if cls in (STRUCT, SPARSE) or (cls != CHAR and cls not in NUMERIC_CLASSES):
        raise ValueError(f"variable {name!r}: MATLAB class {cls} is not supported")
    mtype, real, pos = _element(payload, pos, endian)
    values = _numbers(mtype, real, endian)
    if cls == CHAR:
        if mtype == 16:  # miUTF8
            return name, real.decode("utf-8")
        chars = values.reshape(shape, order="F")
        rows = ["".join(map(chr, r)) for r in chars.reshape(shape[0], -1)]
        return name, rows[0] if len(rows) == 1 else np.array(rows, dtype=object)
    return name, values.astype(NUMERIC_CLASSES[cls]).reshape(shape, order="F")


def _load_hdf5(path: Path, names) -> dict:
    import h5py

    found = {}
    with h5py.File(path, "r") as h5:
        for name in names:
            if name not in h5:
                raise ValueError(f"variable {name} not found")
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
