"""A PNG grid of sample crops: one row per person, columns across outfits and cameras."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError


def tile(images, height=128, width=64, pad=2, background=255):
    """Rows of RGB images resized to one cell size, as one RGB array."""
    import cv2

    cols = max(len(r) for r in images)
    canvas = np.full(((height + pad) * len(images) + pad, (width + pad) * cols + pad, 3), background, np.uint8)
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            y, x = pad + r * (height + pad), pad + c * (width + pad)
            canvas[y : y + height, x : x + width] = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return canvas


def write_preview(store, out: Path, n_ids=8, per_id=8, seed=0):
    import cv2

    out = Path(out)
    if not out.parent.exists():
        raise ReidkitError(f"the folder of --preview does not exist: {out.parent}")
    rng = np.random.default_rng(seed)
    usable = np.flatnonzero(~store.junk & ~store.distractor)
    pids = np.unique(store.pid[usable])
    chosen = np.sort(rng.choice(pids, size=min(n_ids, len(pids)), replace=False))
    rows = []
    for pid in chosen:
        idx = usable[store.pid[usable] == pid]
        # Prefer variety: sort by (clothes, camera) and take evenly spaced images.
        order = np.lexsort((store.camera[idx], store.clothes_id[idx]))
        picks = idx[order][np.linspace(0, len(idx) - 1, num=min(per_id, len(idx))).astype(int)]
        rows.append([store.image(i) for i in picks])
    grid = tile(rows)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise ReidkitError(f"could not write {out}")
    return out
