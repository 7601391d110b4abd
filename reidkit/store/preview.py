"""A PNG grid of sample crops: one row per person, columns across outfits and cameras.

Also the labelled grid every contact sheet is drawn with (``labelled_tile``):
column headers above, captions under each image, text wrapped by measured
width so nothing is cut off.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError

FONT = 1  # cv2.FONT_HERSHEY_PLAIN
FONT_SCALE = 0.6
LINE_HEIGHT = 12  # pixels per text line at FONT_SCALE: 9 above the baseline, 3 below
TEXT_MARGIN = 2


def text_width(text: str, scale: float = FONT_SCALE) -> int:
    import cv2

    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def wrap_text(text: str, max_width: int, scale: float = FONT_SCALE) -> list[str]:
    """``text`` over lines at most ``max_width`` pixels wide (measured with cv2.getTextSize); nothing is dropped.

    Words go whole onto a line while they fit; a word wider than a whole line is split over lines.
    A newline in ``text`` starts a new line.
    """
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split():
            for piece in _split_word(word, max_width, scale):
                candidate = f"{line} {piece}" if line else piece
                if line and text_width(candidate, scale) > max_width:
                    lines.append(line)
                    line = piece
                else:
                    line = candidate
        if line:
            lines.append(line)
    return lines


def _split_word(word: str, max_width: int, scale: float) -> list[str]:
    pieces = []
    while word and text_width(word, scale) > max_width:
        cut = 1  # at least one character per line, however narrow the line
        while cut < len(word) and text_width(word[: cut + 1], scale) <= max_width:
            cut += 1
        pieces.append(word[:cut])
        word = word[cut:]
    return pieces + ([word] if word else [])


def text_band_height(lines: int) -> int:
    """Pixels a band of ``lines`` text lines takes (0 for none)."""
    return LINE_HEIGHT * lines + 2 * TEXT_MARGIN if lines else 0


def draw_lines(canvas, lines, x: int, y: int, colour=(0, 0, 0), scale: float = FONT_SCALE):
    """Draw ``lines`` on ``canvas`` (in place), the first line's top at ``y``."""
    import cv2

    for k, line in enumerate(lines):
        baseline = y + TEXT_MARGIN + LINE_HEIGHT * k + 9
        cv2.putText(canvas, line, (x, baseline), FONT, scale, colour, 1, cv2.LINE_AA)


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


def sheet_layout(cells, columns=None, height=128, width=64, pad=2) -> dict:
    """Where everything of ``labelled_tile`` goes: wrapped header and caption lines, band heights, row tops."""
    text_w = width - 2 * TEXT_MARGIN
    headers = [wrap_text(c or "", text_w) for c in (columns or [])]
    header = text_band_height(max((len(h) for h in headers), default=0))
    captions = [[wrap_text((cell or {}).get("caption") or "", text_w) for cell in row] for row in cells]
    bands = [text_band_height(max((len(c) for c in row), default=0)) for row in captions]
    tops, y = [], pad + (header + pad if header else 0)
    for band in bands:
        tops.append(y)
        y += height + band + pad
    cols = max([len(r) for r in cells] + [len(columns or [])])
    return {"headers": headers, "header_height": header, "captions": captions, "bands": bands, "row_tops": tops,
            "size": (y, (width + pad) * cols + pad)}


def labelled_tile(cells, columns=None, height=128, width=64, pad=2, background=255) -> np.ndarray:
    """A contact sheet as one RGB array: rows of cells, each an image with its caption under it.

    ``cells``: rows of ``{"image": RGB array, "caption": str (optional), "frame": RGB colour (optional)}``,
    or None for an empty cell. ``columns``: a header label per column (optional). Headers and captions are
    wrapped to the cell width; the header band and each row's caption band grow to hold every line.
    """
    import cv2

    layout = sheet_layout(cells, columns, height, width, pad)
    canvas = np.full((*layout["size"], 3), background, np.uint8)
    for c, lines in enumerate(layout["headers"]):
        draw_lines(canvas, lines, pad + c * (width + pad) + TEXT_MARGIN, pad)
    for row, top, captions in zip(cells, layout["row_tops"], layout["captions"]):
        for c, cell in enumerate(row):
            if cell is None:
                continue
            x = pad + c * (width + pad)
            img = cv2.resize(cell["image"], (width, height), interpolation=cv2.INTER_AREA)
            if cell.get("frame") is not None:
                cv2.rectangle(img, (0, 0), (width - 1, height - 1), tuple(int(v) for v in cell["frame"]), 2)
            canvas[top : top + height, x : x + width] = img
            draw_lines(canvas, captions[c], x + TEXT_MARGIN, top + height)
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
