"""Decoding stored image bytes into RGB arrays (OpenCV, imported on first use)."""
from __future__ import annotations

import numpy as np

from reidkit.errors import StoreError

MAGIC = {
    b"\xff\xd8\xff": "jpg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"GIF8": "gif",
    b"II*\x00": "tif",
    b"MM\x00*": "tif",
    b"RIFF": "webp",
}


class ImageDecodeError(StoreError):
    """A stored image that cannot be decoded, named by its store index and source path (one line).

    PyTorch's DataLoader re-raises a worker's exception as ``type(exc)(text)`` with the worker's whole
    traceback as the text; this class keeps only the original message, so the line stays one line.
    """

    def __init__(self, message: str = "", **kwargs):
        super().__init__(_original_message(kwargs.get("message", message), type(self)))


def _original_message(text: str, cls) -> str:
    if "in DataLoader worker process" not in text.split("\n", 1)[0]:
        return text
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        found = [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]
        if found:
            return found[-1]
    return text.strip().splitlines()[-1]


def sniff_format(data: bytes) -> str | None:
    for magic, name in MAGIC.items():
        if data[: len(magic)] == magic:
            return name
    return None


def decode_any(data) -> np.ndarray | None:
    """Decode bytes as stored (any depth, any channels); None when undecodable or larger than the limit."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return None
    try:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's own size limit raises instead of returning None
        return None


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


# Largest image accepted (documented in docs/store.md): person crops and video frames are far smaller, and a
# header that claims more (60000x60000) would make every later decode allocate gigabytes or fail.
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26  # 67 megapixels: 200 MB as RGB


def check_size(height: int, width: int, fmt: str):
    """ValueError when a declared or decoded size is empty or over MAX_SIDE / MAX_PIXELS."""
    if height <= 0 or width <= 0:
        raise ValueError(f"corrupt {fmt} image (declares {width}x{height} pixels)")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ValueError(f"{fmt} image declares {width}x{height} pixels; expected at most {MAX_SIDE} on a side "
                         f"and {MAX_PIXELS // 1_000_000} megapixels")


PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> bit depths
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy


def _png_check_data(data: bytes, height: int, width: int):
    """Inflate the IDAT stream and check it holds exactly the rows IHDR declares, each with a valid filter byte.

    Chunk CRCs only prove the bytes were not damaged after the CRC was computed; a writer that compressed
    garbage passes them. This is what libpng would reject, without its messages on stderr.
    """
    import zlib

    depth, colour, interlace = data[24], data[25], data[28]
    if depth not in PNG_DEPTHS.get(colour, ()) or data[26] != 0 or data[27] != 0 or interlace not in (0, 1):
        raise ValueError(f"corrupt png image (invalid IHDR: bit depth {depth}, colour type {colour})")
    bits = PNG_CHANNELS[colour] * depth
    if interlace:
        passes = [((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in ADAM7]
    else:
        passes = [(width, height)]
    passes = [(w, h) for w, h in passes if w > 0 and h > 0]
    expected = sum(h * (1 + (w * bits + 7) // 8) for w, h in passes)
    pos, stream = 8, []
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            stream.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(stream), expected + 1)  # at most one byte more than declared: no bomb
    except zlib.error as exc:
        raise ValueError(f"corrupt png image (compressed data: {exc})") from None
    if len(raw) != expected or not inflater.eof:
        raise ValueError(f"corrupt png image (compressed data holds {'more' if len(raw) > expected else 'less'} "
                         f"than the declared {width}x{height} pixels)")
    offset = 0
    for w, h in passes:
        stride = 1 + (w * bits + 7) // 8
        if max(raw[offset : offset + h * stride : stride]) > 4:
            raise ValueError("corrupt png image (invalid row filter)")
        offset += h * stride


def declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(height, width) a BMP, GIF, TIFF or WebP header declares; None where it cannot be read."""
    import struct

    try:
        if fmt == "bmp":
            if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
                w, h = struct.unpack_from("<HH", data, 18)
            else:
                w, h = struct.unpack_from("<ii", data, 18)
            return abs(h), abs(w)  # a negative height means rows stored top-down
        if fmt == "gif":
            w, h = struct.unpack_from("<HH", data, 6)
            return h, w
        if fmt == "webp":
            kind = data[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack_from("<HH", data, 26)
                return h & 0x3FFF, w & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
            if kind == b"VP8X":
                return int.from_bytes(data[27:30], "little") + 1, int.from_bytes(data[24:27], "little") + 1
            return None
        if fmt == "tif":
            order = "<" if data[:2] == b"II" else ">"
            ifd = struct.unpack_from(order + "I", data, 4)[0]
            found = {}
            for k in range(struct.unpack_from(order + "H", data, ifd)[0]):
                tag, kind, _, value = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * k)
                if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
                    found[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
            return (found[257], found[256]) if len(found) == 2 else None
    except (struct.error, IndexError):
        return None
    return None


def probe(data: bytes, decode: bool = False) -> tuple[int, int, str]:
    """(height, width, format) of encoded bytes; ValueError when empty, unknown, truncated, corrupt or too large.

    JPEG and PNG are validated from their structure (JPEG: marker segments up
    to the frame header and the end marker; PNG: every chunk's CRC and IEND,
    then the inflated pixel data against the declared size), which is cheaper
    than decoding (a PNG whose chunks do not check out is refused); other formats,
    JPEGs whose structure does not parse, and ``decode=True`` are fully decoded. Every declared size is bounded
    (``MAX_SIDE``, ``MAX_PIXELS``) before anything is decoded. What structure
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
    if fmt == "jpg":
        size = _jpeg_size(data)
    elif fmt == "png":
        size = _png_size(data)
        if size is None:  # libpng would refuse it too, printing its own line on stderr
            raise ValueError("corrupt png image (its chunks do not check out: length, CRC, IHDR or IDAT)")
        check_size(*size, fmt)
        _png_check_data(data, *size)
    else:
        size = declared_size(data, fmt)
        if size is None:
            raise ValueError(f"corrupt {fmt} image (unreadable header)")
    if size is not None:
        check_size(*size, fmt)
        if not decode and fmt in ("jpg", "png"):
            return size[0], size[1], fmt
    img = decode_any(data)
    if img is None:
        raise ValueError(f"corrupt {fmt} image")
    check_size(int(img.shape[0]), int(img.shape[1]), fmt)
    return int(img.shape[0]), int(img.shape[1]), fmt
