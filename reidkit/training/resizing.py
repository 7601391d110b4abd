"""Resizing a trained model's input images: the references' PIL filters, or OpenCV's bilinear of older runs.

CAL and BoT resize PIL images (torchvision ``Resize`` on a PIL image is
``Image.resize(..., BILINEAR)``; CAL's video ``Scale`` uses BICUBIC). PIL's
filters are antialiased: when shrinking, the filter's support grows with the
scale, so every input pixel contributes. OpenCV's INTER_LINEAR only
interpolates between the two nearest pixels and aliases fine patterns; runs
made before the ``resize`` setting existed were trained (and are evaluated)
with it.
"""
from __future__ import annotations

import numpy as np

PIL_BILINEAR, PIL_BICUBIC, CV2_BILINEAR = "pil-bilinear", "pil-bicubic", "cv2-bilinear"
KERNELS = (PIL_BILINEAR, PIL_BICUBIC, CV2_BILINEAR)
DEFAULT_KERNEL = PIL_BILINEAR  # CAL's and BoT's T.Resize on PIL images
LEGACY_KERNEL = CV2_BILINEAR  # what a run folder whose config.yaml has no `resize` was trained with


def run_kernel(config: dict) -> str:
    """The kernel a run resizes with: its ``resize`` setting, or OpenCV's bilinear for runs made before it existed."""
    return config.get("resize", LEGACY_KERNEL)


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"resize kernel must be one of {', '.join(KERNELS)} (got {kernel!r})")
    return kernel


def _pil_resize(image: np.ndarray, height: int, width: int, bicubic: bool) -> np.ndarray:
    from PIL import Image

    flt = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR
    # np.array copies: the result is writable (np.asarray of a PIL image is a read-only view of its bytes)
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), flt))


def resize(image: np.ndarray, height: int, width: int, kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """HxWx3 uint8 -> height x width x 3 uint8 with ``kernel``: exactly PIL's ``Image.resize`` output for the pil-*
    kernels, OpenCV's INTER_LINEAR for cv2-bilinear. An image already of that size comes back unchanged."""
    check_kernel(kernel)
    if image.shape[:2] == (height, width):
        return image
    if kernel == CV2_BILINEAR:
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return _pil_resize(image, height, width, bicubic=kernel == PIL_BICUBIC)


def enlarge(image: np.ndarray, height: int, width: int, kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """The enlargement of CAL's random crop: PIL bilinear for the pil-* kernels (CAL's RandomCroping and the video
    RandomCrop both pass Image.BILINEAR, whatever the resize before them), OpenCV's bilinear for cv2-bilinear."""
    return resize(image, height, width, CV2_BILINEAR if check_kernel(kernel) == CV2_BILINEAR else PIL_BILINEAR)
