"""The report page: plain HTML with inline CSS and images as data URIs (one file, opens anywhere, offline)."""
from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from reidkit.reporting import charts

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;color:#1d2430;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.4rem;border-bottom:2px solid #d8dee8;padding-bottom:.2rem}
h3{margin-top:1.6rem} .meta{color:#5b6576;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem} th,td{border:1px solid #d8dee8;padding:.3rem .6rem;text-align:right}
th{background:#eef2f7} td.l,th.l{text-align:left} tr:nth-child(even) td{background:#f8fafc}
td.best{font-weight:700;color:#0b5d1e} .figs{display:flex;flex-wrap:wrap;gap:1rem} .figs img{max-width:min(100%,34rem);height:auto;border:1px solid #e3e7ee} .ranked img{max-width:100%}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.4rem .8rem;margin:.4rem 0}
pre{background:#f4f6f9;padding:.8rem;overflow:auto;font-size:.8rem} details{margin:.6rem 0}
"""
METRICS = (("rank1", "R1"), ("rank5", "R5"), ("rank10", "R10"), ("mAP", "mAP"), ("mINP", "mINP"))


def esc(value) -> str:
    return html.escape(str(value))


def img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(headers, rows, left=1, best_columns=()) -> str:
    """A table; the first ``left`` columns are left-aligned text; in ``best_columns`` the largest value is bold."""
    best = {}
    for c in best_columns:
        values = [r[c] for r in rows if isinstance(r[c], (int, float))]
        best[c] = max(values) if len(set(values)) > 1 else None  # a tie across all runs marks nothing
    head = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(headers or []))
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = "l" if i < left else ("best" if best.get(i) is not None and v == best[i] else "")
            cells.append(f'<td class="{cls}">{esc(f"{100 * v:.1f}" if isinstance(v, float) and i >= left else v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""  # key-value tables have none
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def key_settings(run) -> list[tuple[str, str]]:
    c = run.config
    b = c.get("backbone") or {}
    weights = b.get("resolved_weights") or b.get("weights") or "none (random init)"
    finished = int(run.log[-1]["epoch"]) if run.log else 0
    return [
        ("strategy", c.get("strategy", c.get("plugin", "?")) + (f" (base {c['base']})" if c.get("base") else "")),
        ("backbone", f"{b.get('model', '?')} ({b.get('plugin', '?')}), start weights {weights}"),
        ("epochs", f"{finished} of {c.get('epochs', '?')} finished"),
        ("batch", f"{c.get('ids_per_batch', '?')} persons x {c.get('images_per_id', '?')} images"),
        ("input", f"{c.get('height', '?')} x {c.get('width', '?')} (h x w)"),
        ("learning rate", f"{c.get('lr', '?')}, milestones {c.get('milestones', '?')} x{c.get('gamma', '?')}"),
        ("seed", c.get("seed", "?")),
        ("test features", _flip_words(c)),
        ("generated runs", ", ".join(c.get("generated") or []) or "none"),
        ("processes", c.get("world_size", 1)),
    ]


def _flip_words(config) -> str:
    from reidkit.evaluation.inference import run_test_flip

    return "flip-averaged (test_flip)" if run_test_flip(config) else "no flip (test_flip: false)"


def best_section(best: dict, order=()) -> str:
    """The best epoch training kept, labelled as chosen on the test set (never the run's result); protocols in ``order`` first."""
    metrics = best.get("metrics") or {}
    names = [*(n for n in order if n in metrics), *(n for n in metrics if n not in order)]
    rows = [[name, metrics[name].get("queries", ""), metrics[name].get("gallery", ""),
             *(float(metrics[name][k]) if k in metrics[name] else "-" for k, _ in METRICS)] for name in names]
    return (f"<h3>Best epoch {esc(best.get('epoch'))}, chosen on the test set</h3>"
            f'<div class="note">recorded by training: the epoch with the highest {esc(best.get("protocol"))} rank-1 among those '
            "evaluated (--eval-every), as CAL and DLCR report; choosing on test data flatters a result, so the run's result "
            f"is the last epoch above (weights: {esc('best/model.safetensors')})</div>"
            + table(["protocol", "queries", "gallery", *(h for _, h in METRICS)], rows))


def provenance(run) -> list[tuple[str, str]]:
    c = run.config
    versions = ", ".join(f"{k} {v}" for k, v in (c.get("versions") or {}).items())
    data = c.get("data") or {}
    return [
        ("run folder", str(run.path.resolve())),
        ("store", c.get("store", "?")),
        ("store fingerprint", c.get("store_fingerprint", "?")),
        ("training images", f"{data.get('real_images', '?')} real + {data.get('generated_images', 0)} generated"),
        ("versions", versions or "?"),
    ]


def results_rows(results: dict) -> list[list]:
    return [[name, r.get("queries", ""), r.get("gallery", ""), *(float(r[k]) for k, _ in METRICS)] for name, r in results.items()]


def run_section(run) -> str:
    out = [f'<h2 id="{esc(run.name)}">{esc(run.name)}</h2>']
    out += [f'<div class="note">{esc(n)}</div>' for n in run.notes]
    out.append("<h3>Settings</h3>" + table(["setting", "value"], key_settings(run), left=2))
    import yaml

    out.append(f"<details><summary>config.yaml (every setting)</summary><pre>{esc(yaml.safe_dump(run.config, sort_keys=False))}</pre></details>")
    epochs = [r["epoch"] for r in run.log]
    losses = charts.curves_png({c: (epochs, [r[c] for r in run.log]) for c in run.loss_columns()}, "training losses", "loss")
    metrics = charts.curves_png({c.replace("_", " "): (epochs, [r[c] for r in run.log]) for c in run.metric_columns()},
                                "evaluation during training", "%", percent=True)
    out.append("<h3>Training</h3>")
    out.append(f'<div class="figs">{img(losses, "training losses per epoch")}{img(metrics, "evaluation per epoch")}</div>'
               if losses or metrics else '<div class="note">log.csv has no finished epoch yet</div>')
    if run.results:
        flip = next(iter(run.results.values())).get("flip")
        words = "" if flip is None else (", flip-averaged test features" if flip else ", test features without flip")
        out.append(f"<h3>Results (last epoch{words})</h3>"
                   + table(["protocol", "queries", "gallery", *(h for _, h in METRICS)], results_rows(run.results)))
        out.append(f'<div class="figs">{img(charts.cmc_png(run.results, f"{run.name}: CMC per protocol"), "CMC curves")}</div>')
    if run.ranked is not None:
        out.append("<h3>Ranked lists</h3>"
                   '<div class="note">each protocol\'s 5 queries of lowest average precision, then their 10 nearest gallery '
                   "images: green border the same person (a positive), red another person, grey the same person dropped by "
                   "the protocol's rule (same camera, or the outfit rule), shown but not counted (docs/eval.md)</div>"
                   f'<div class="figs ranked">{img(charts.image_png(run.ranked), "ranked lists of the worst queries")}</div>')
    if run.best:
        out.append(best_section(run.best, list(run.results or ())))
    for g in run.generated:
        out.append(f"<h3>Generated run {esc(g.name)}</h3>")
        if g.info:
            s = g.info.get("settings", {})
            out.append(table(None, [
                ("generator", f"{g.info.get('generator')} (model {g.info.get('model_id') or 'none: weight-free'})"),
                ("masker / prompts", f"{s.get('masker', '-')} / {s.get('prompts', '-')}"),
                ("items", f"{g.items} made, {g.kept} kept ({100 * g.kept / max(g.items, 1):.0f}%)"),
                ("split, variants, seed", f"{g.info.get('split')}, {g.info.get('variants')}, {g.info.get('seed')}"),
                ("generator settings", ", ".join(f"{k}={v}" for k, v in (s.get("generator_settings") or {}).items()) or "defaults"),
            ], left=2))
        out.append(f'<div class="figs">{img(charts.image_png(g.sheet), f"originals and kept variants of {g.name}")}</div>'
                   if g.sheet is not None else '<div class="note">no kept images to show</div>')
    audited = [g for g in run.generated if g.audit]
    if audited:
        out.append("<h3>Generated data</h3>" + "".join(audit_block(g) for g in audited))
    out.append("<h3>Provenance</h3>" + table(None, provenance(run), left=2))
    return "\n".join(out)


def audit_block(g) -> str:
    """One generated run's 'reidkit audit' (docs/audit.md): identity kept against real images and other persons, what
    changed outside the mask, diversity, the filter; the model that measured it is named."""
    a = g.audit
    ident = a.get("identity") or {}
    gen, ceil, floor = (ident.get(k) or {} for k in ("generated", "ceiling", "floor"))

    def num(v, pct=False):
        return "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    rows = [(label, num(gen.get(k), pct), num(ceil.get(k), pct), num(floor.get(k), pct))
            for label, k, pct in (("similarity to the person's centroid", "centroid_cos", False),
                                  ("rank-1 share (own person nearest)", "rank1_share", True),
                                  ("similarity to the source image", "source_cos", False))]
    model = a.get("model") or {}
    ref = a.get("reference") or {}
    lines = [f"{g.name}: {a.get('items', {}).get('kept', '?')} kept items, measured with {model.get('path')} "
             f"({model.get('weights')} weights); centroids of the {ref.get('persons')} persons of split '{ref.get('split')}'"]
    m = a.get("mask_change") or {}
    if m.get("measured"):
        lines.append(f"outside the clothing mask: unchanged in all {m.get('items_measured')} items" if m.get("outside_zero") else
                     f"CHANGED OUTSIDE THE MASK in {m.get('items_changed_outside')} of {m.get('items_measured')} items "
                     f"(largest deltaE76 {num(m.get('delta_e_outside_max'))})")
        lines.append(f"inside the clothing mask: mean deltaE76 {num(m.get('delta_e_inside'))}")
    d = a.get("diversity") or {}
    lines.append(f"diversity: spread within a {d.get('grouped_by')} {num(d.get('within_generated'))}, between real images of a "
                 f"person {num(d.get('between_real'))}; {d.get('distinct_targets')} distinct target outfits")
    f = a.get("filter") or {}
    if f.get("rejected"):
        reasons = ", ".join(f"{k} ({v})" for k, v in list((f.get("reasons") or {}).items())[:3])
        lines.append(f"filter: {f.get('kept')} kept, {f.get('rejected')} rejected: {reasons}")
    return ("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>"
            + table(["", "generated (kept)", "real images (ceiling)", "other persons (floor; rank-1: chance)"], rows)
            + (f'<div class="figs">{img(g.audit_histogram, f"identity similarity of {g.name} against real images")}</div>'
               if g.audit_histogram else ""))


def comparison_section(runs) -> str:
    evaluated = [r for r in runs if r.results]
    if len(runs) < 2 or not evaluated:
        return ""
    protocols = list(dict.fromkeys(p for r in evaluated for p in r.results))
    headers, rows = ["run"], []
    for p in protocols:
        headers += [f"{p} R1", f"{p} mAP"]
    for r in evaluated:
        row = [r.name]
        for p in protocols:
            m = r.results.get(p)
            row += [float(m["rank1"]), float(m["mAP"])] if m else ["-", "-"]
        rows.append(row)
    out = ["<h2>Comparison</h2>", table(headers, rows, best_columns=range(1, len(headers)))]
    figures = []
    for p in protocols:
        curves = {r.name: r.results[p] for r in evaluated if p in r.results}
        figures.append(img(charts.cmc_png(curves, f"CMC, protocol {p}"), f"CMC of every run, protocol {p}"))
    out.append(f'<div class="figs">{"".join(figures)}</div>')
    return "\n".join(out)


def render(runs, title: str | None = None) -> str:
    from reidkit._version import __version__

    title = title or ("reidkit report: " + ", ".join(r.name for r in runs))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{esc(title)}</h1>", f'<p class="meta">made by reidkit {esc(__version__)} on {when}</p>',
            comparison_section(runs), *(run_section(r) for r in runs)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")
