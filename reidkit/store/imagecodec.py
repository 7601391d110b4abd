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


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: markers without a length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the frame header, walking the marker segments up to the scan; None if malformed."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI or the scan before any frame header
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > n:
            return None
        if marker in JPEG_SOF:
            if length < 7:
                return None
            h, w = int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
            return (h, w) if h > 0 and w > 0 else None
        pos += 2 + length
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from IHDR after checking every chunk's length and CRC up to IEND; None if malformed."""
    import zlib

    pos, n, size, seen_data = 8, len(data), None, False
    while pos + 12 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > n:
            return None
        kind = data[pos + 4 : pos + 8]
        if zlib.crc32(data[pos + 4 : pos + 8 + length]) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if pos == 8:
            if kind != b"IHDR" or length != 13:
                return None
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            size = (h, w) if h > 0 and w > 0 else None
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            return size if seen_data else None
        pos = end
    return None


def probe(data: bytes, decode: bool = False) -> tuple[int, int, str]:
    """(height, width, format) of encoded bytes; ValueError when empty, unknown, truncated or corrupt.

    JPEG and PNG are validated from their structure (JPEG: marker segments up
    to the frame header and the end marker; PNG: every chunk's CRC and IEND),
    which is ~50x cheaper than decoding; other formats, files whose structure
    does not parse, and ``decode=True`` are fully decoded. What structure
    checks cannot see: damaged JPEG entropy-coded data (decoders mostly accept
    it too, as grey blocks).
    """
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
    if not decode:
        size = _jpeg_size(data) if fmt == "jpg" else _png_size(data) if fmt == "png" else None
        if size is not None:
            return size[0], size[1], fmt
    img = decode_any(data)
    if img is None:
        raise ValueError(f"corrupt {fmt} image")
    return int(img.shape[0]), int(img.shape[1]), fmt
