"""Decoding stored image bytes into RGB arrays (OpenCV, imported on first use)."""
from __future__ import annotations

import numpy as np

MAGIC = {
    b"\xff\xd8\xff": "jpg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"GIF8": "gif",
    b"II*\x00": "tif",
    b"MM\x00*": "tif",
    b"RIFF": "webp",
}


def sniff_format(data: bytes) -> str | None:
    for magic, name in MAGIC.items():
        if data[: len(magic)] == magic:
            return name
    return None


def decode_any(data) -> np.ndarray | None:
    """Decode bytes as stored (any depth, any channels); None when undecodable."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return None
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit) as HxWx3 uint8 RGB."""
    import cv2

    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_rgb(data) -> np.ndarray:
    img = decode_any(data)
    if img is None:
        raise ValueError("undecodable image bytes")
    return to_rgb8(img)


def decode_gray(data) -> np.ndarray:
    """Masks and label maps: single-channel uint8."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("undecodable mask bytes")
    return img


def encode_png(img: np.ndarray, rgb: bool = True) -> bytes:
    import cv2

    if img.ndim == 3 and rgb:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def probe(data: bytes) -> tuple[int, int, str]:
    """(height, width, format) of encoded bytes; ValueError when empty, unknown or corrupt."""
    if len(data) == 0:
        raise ValueError("zero-byte file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ValueError("not a known image format")
    # A truncated file often still decodes partially: check the end markers first.
    if fmt == "jpg" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError("truncated jpg image (no end marker)")
    if fmt == "png" and b"IEND" not in data[-64:]:
        raise ValueError("truncated png image (no IEND chunk)")
    img = decode_any(data)
    if img is None:
        raise ValueError(f"corrupt {fmt} image")
    return int(img.shape[0]), int(img.shape[1]), fmt
