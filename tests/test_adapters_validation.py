"""The writer's cheap image validation (imagecodec.probe): structure checks agree with full decoding."""
import cv2
import numpy as np
import pytest

from reidkit.store.imagecodec import probe
from tests.miniature_layouts import KINDS, image_bytes


def _jpeg(img, **flags):
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if flags.get("progressive") else []
    return cv2.imencode(".jpg", img, params)[1].tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_structure_probe_matches_full_decode(kind):
    data = image_bytes(kind, 37, 13)
    assert probe(data) == probe(data, decode=True) == (37, 13, "jpg" if kind == "jpg" else "png")


def test_progressive_and_exif_jpegs_are_sized_from_the_frame_header():
    img = np.random.default_rng(0).integers(0, 256, (50, 21, 3), dtype=np.uint8)
    assert probe(_jpeg(img, progressive=True)) == (50, 21, "jpg")
    plain = _jpeg(img)
    app1 = b"\xff\xe1" + (2 + 10).to_bytes(2, "big") + b"Exif\x00\x00" + b"\x00" * 4  # an extra segment before the frame
    assert probe(plain[:2] + app1 + plain[2:]) == (50, 21, "jpg")


@pytest.mark.parametrize("damage", ["zero", "truncated_jpg", "truncated_png", "png_crc", "jpg_no_frame", "unknown"])
def test_damaged_images_are_rejected(damage):
    jpg, png = image_bytes("jpg", 16, 8), image_bytes("png", 16, 8)
    data = {
        "zero": b"",
        "truncated_jpg": jpg[: len(jpg) // 2],
        "truncated_png": png[: len(png) - 20],
        "png_crc": png[:40] + bytes([png[40] ^ 0xFF]) + png[41:],  # a flipped byte inside IDAT
        "jpg_no_frame": b"\xff\xd8\xff\xe0\x00\x04ab" + b"\x00" * 64 + b"\xff\xd9",
        "unknown": b"GIF7 not an image",
    }[damage]
    with pytest.raises(ValueError):
        probe(data)


@pytest.mark.parametrize("height, width", [(37, 23), (1, 1), (3, 9), (2, 5)])
def test_interlaced_png_data_is_checked_pass_by_pass(height, width):
    """Adam7 PNGs (OpenCV cannot write them): the inflated-data check must accept a good one, as libpng does."""
    import struct
    import zlib

    from reidkit.store.imagecodec import ADAM7

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    img = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + sub[y].tobytes() for x0, y0, dx, dy in ADAM7
                   for sub in [img[y0::dy, x0::dx]] if sub.size for y in range(sub.shape[0]))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (decoded[..., ::-1] == img).all()  # the test's own encoding is right
    assert probe(png) == (height, width, "png")
    short = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw[:-1])) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="corrupt png"):
        probe(short)
