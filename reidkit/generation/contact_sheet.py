"""Contact sheets of a generated run: each chosen original next to its variants, prompts under them."""
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
                  "kept": True}]
        if masks is not None and s in masks:
            first.append({"image": overlay(store.image(s), masks.clothing_mask(s)), "caption": f"mask ({masks.name})", "kept": True})
        variants = [{
            "image": run.image(j),
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


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def render_sheet(rows, height=160, width=80, text_lines=5, pad=2) -> np.ndarray:
    """One RGB image: cells of image + caption band; rejected variants framed in red."""
    import cv2

    from reidkit.store.preview import tile

    band = 10 * text_lines + 4
    cells = []
    for row in rows:
        out_row = []
        for cell in row:
            img = cv2.resize(cell["image"], (width, height), interpolation=cv2.INTER_AREA)
            if not cell["kept"]:
                cv2.rectangle(img, (0, 0), (width - 1, height - 1), (220, 0, 0), 2)
            canvas = np.full((height + band, width, 3), 255, np.uint8)
            canvas[:height] = img
            caption = cell["caption"] if cell["kept"] else f"REJECTED {cell['caption']}"
            for k, line in enumerate(_wrap(caption, max(6, width // 6))[:text_lines]):
                cv2.putText(canvas, line, (1, height + 10 + 10 * k), cv2.FONT_HERSHEY_PLAIN, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
            out_row.append(canvas)
        cells.append(out_row)
    return tile(cells, height=height + band, width=width, pad=pad)


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
        parts.append(f"<h2>clothing bank {html.escape(bank.name)}: {len(bank.entries)} outfits, "
                     f"{len(failed)} replies did not parse</h2><table>")
        for e in sorted(bank.entries.values(), key=lambda e: (e.ok, e.key)):
            flag = "" if e.ok else " <b>parse failure</b>"
            parts.append(f"<tr><td>{html.escape(e.key)}{flag}</td><td>{html.escape(', '.join(e.items))}</td>"
                         f"<td><pre>{html.escape(e.raw[:1500])}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    (d / "index.html").write_text("\n".join(parts))
    return d / "index.html"
