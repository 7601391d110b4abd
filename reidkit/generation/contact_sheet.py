"""Contact sheets of a generated run: each chosen original next to its variants, columns headed, prompts under them."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError


def choose_sources(run, n: int, seed: int = 0) -> list[int]:
    """``n`` source images of the run (seeded choice, shown in store order)."""
    sources = np.unique(run.source_index())
    if len(sources) == 0:
        raise ReidkitError(f"run '{run.name}' has no items yet")
    picked = np.random.default_rng(seed).choice(sources, size=min(n, len(sources)), replace=False)
    return sorted(int(s) for s in picked)


ORIGINAL, MASK = (0, "original"), (1, "mask")


def variant_column(variant: int) -> tuple[int, str]:
    """Sheet column of a run's variant number (0-based): headed 'variant 1' for the first."""
    return (2 + variant, f"variant {variant + 1}")


def run_mask_set(store, run):
    """The mask set the run used (None for generators without masks)."""
    name = run.settings.get("mask_set")
    return store.mask_sets().get(name) if name else None


def run_bank(store, run):
    """The clothing bank the run drew its targets from (None if absent)."""
    from reidkit.generation.bank import KIND, ClothingBank

    name = run.settings.get("bank")
    d = store.parts_dir / KIND / name if name else None
    return ClothingBank.read(d) if d is not None and (d / "part.json").is_file() else None


def overlay(image, mask, colour=(255, 0, 255), alpha=0.45):
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    return out.astype(np.uint8)


def gather(store, run, sources, with_masks: bool):
    """Per source: original (and mask overlay), then its variants with prompt, key, seed, verdict."""
    src = run.source_index()
    masks = run_mask_set(store, run) if with_masks else None
    rows = []
    for s in sources:
        idx = np.flatnonzero(src == s)
        idx = idx[np.argsort(run.variant()[idx])]
        first = [{"image": store.image(s), "caption": f"original #{s} pid {int(store.pid[s])} cam {int(store.camera[s])}",
                  "kept": True, "column": ORIGINAL}]
        if masks is not None and s in masks:
            first.append({"image": overlay(store.image(s), masks.clothing_mask(s)), "caption": f"mask ({masks.name})", "kept": True,
                          "column": MASK})
        variants = [{
            "image": run.image(j),
            "column": variant_column(int(run.variant()[j])),
            "caption": str(run.column("prompt")[j]),
            "key": str(run.column("target_clothes_key")[j]),
            "seed": int(run.column("seed")[j]),
            "variant": int(run.variant()[j]),
            "kept": bool(run.kept()[j]),
            "reason": str(run.column("reject_reason")[j]),
            "scores": json.loads(run.column("scores")[j] or "{}"),
        } for j in idx]
        rows.append(first + variants)
    return rows


def kept_rows(store, run, rows: int, seed: int = 0) -> list[list]:
    """``rows`` originals with kept variants (seeded choice, store order), each followed by its kept variants only."""
    kept = np.flatnonzero(run.kept()) if run.files else np.zeros(0, np.int64)
    sources = np.unique(run.source_index()[kept]) if len(kept) else np.zeros(0, np.int64)
    chosen = np.sort(np.random.default_rng(seed).choice(sources, min(rows, len(sources)), replace=False))
    return [[cell for cell in row if cell["kept"]] for row in gather(store, run, [int(s) for s in chosen], with_masks=False)]


def sheet_cells(rows) -> tuple[list[list], list[str]]:
    """``gather``'s rows as ``labelled_tile`` cells, each in its column (original, mask, variant k), and the headers.

    A cell without a ``column`` stays at its position; a column some rows lack (a missing mask or variant) is left empty there.
    """
    keys = [[cell.get("column", (c, "")) for c, cell in enumerate(row)] for row in rows]
    columns = sorted(set(k for row in keys for k in row))
    where = {k: c for c, k in enumerate(columns)}
    cells = []
    for row, row_keys in zip(rows, keys):
        out = [None] * len(columns)
        for cell, key in zip(row, row_keys):
            kept = cell.get("kept", True)
            out[where[key]] = {"image": cell["image"], "caption": cell["caption"] if kept else f"REJECTED {cell['caption']}",
                               "frame": None if kept else (220, 0, 0)}
        cells.append(out)
    return cells, [label for _, label in columns]


def render_sheet(rows, height=160, width=80, pad=2) -> np.ndarray:
    """One RGB image: a header per column, cells of image + caption wrapped under it; rejected variants framed in red.

    The one contact-sheet renderer: ``reidkit show`` and the demo's contact sheet both draw with it.
    """
    from reidkit.store.preview import labelled_tile

    cells, columns = sheet_cells(rows)
    return labelled_tile(cells, columns=columns, height=height, width=width, pad=pad)


def write_sheet(rows, out: Path, **kw) -> Path:
    import cv2

    out = Path(out)
    if not out.parent.is_dir():
        raise ReidkitError(f"the folder of --out does not exist: {out.parent}")
    if not cv2.imwrite(str(out), cv2.cvtColor(render_sheet(rows, **kw), cv2.COLOR_RGB2BGR)):
        raise ReidkitError(f"could not write {out} (use a .png or .jpg name)")
    return out


def write_html(rows, run, directory: Path, bank=None) -> Path:
    """DIR/index.html + DIR/img/*.png: every cell with its prompt, target outfit, seed, verdict and scores."""
    from reidkit.store.imagecodec import encode_png

    d = Path(directory)
    (d / "img").mkdir(parents=True, exist_ok=True)
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(run.name)}</title>",
             "<style>td{vertical-align:top;font:11px sans-serif;max-width:160px}img{width:128px}"
             ".rej{outline:3px solid #d00}</style></head><body>",
             f"<h1>run {html.escape(run.name)}</h1><pre>{html.escape(json.dumps(run.settings, indent=1)[:4000])}</pre><table>"]
    for r, row in enumerate(rows):
        parts.append("<tr>")
        for c, cell in enumerate(row):
            name = f"img/{r:03d}_{c:02d}.png"
            (d / name).write_bytes(encode_png(cell["image"]))
            meta = html.escape(cell["caption"])
            if "key" in cell:
                meta += (f"<br>target {html.escape(cell['key'])}, seed {cell['seed']}, variant {cell['variant']}"
                         + ("" if cell["kept"] else f"<br><b>rejected</b>: {html.escape(cell['reason'])}")
                         + (f"<br>{html.escape(json.dumps(cell['scores']))}" if cell["scores"] else ""))
            cls = "" if cell["kept"] else " class='rej'"
            parts.append(f"<td><img src='{name}'{cls}><br>{meta}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    if bank is not None:
        failed = [e for e in bank.entries.values() if not e.ok]
        parsed = f", {len(failed)} replies did not parse" if failed else ""  # template banks have no replies
        parts.append(f"<h2>clothing bank {html.escape(bank.name)}: {len(bank.entries)} outfits{parsed}</h2><table>")
        for e in sorted(bank.entries.values(), key=lambda e: (e.ok, e.key)):
            flag = "" if e.ok else " <b>parse failure</b>"
            parts.append(f"<tr><td>{html.escape(e.key)}{flag}</td><td>{html.escape(', '.join(e.items))}</td>"
                         f"<td><pre>{html.escape(e.raw[:1500])}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    (d / "index.html").write_text("\n".join(parts))
    return d / "index.html"
