"""Ranked lists: for a few queries, the query image and its nearest gallery images, marked correct or wrong.

What torchreid's ``visualize_ranked_results`` shows, one image for every protocol evaluated. A row is a
query (the worst N by average precision by default: lowest AP first, equal AP by query index; queries with
no positive have no AP and are not among them; or chosen query indices) followed by its top-k gallery
units under the protocol's final distances (after query expansion and re-ranking when asked):

- correct (green border): the query's person, a positive under the protocol's rule;
- wrong (red): another person (distractors included);
- junk (grey): the query's person but dropped by the rule (same camera; for ``cc`` also same outfit, for
  ``sc`` also another outfit). Shown where they sit in the distance order, not counted among the k and not
  numbered (the ranking skips them). Images the store flags as junk are in no gallery and never shown.

Order: distance, then at equal distance other persons before the query's person (the ranking's tie rule),
then gallery position. Tracklet protocols show each unit's first image; single-shot protocols the first
trial's gallery. Query and gallery indices are positions in the protocol's query and gallery lists (the
store order of its units); ``query_image`` / ``gallery_images`` are store indices.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError

DEFAULTS = {"n": 5, "k": 10, "queries": None}
CELL = (128, 64)  # image height, width inside a tile
BORDER = 4
GAP = 4  # between gallery tiles
QUERY_GAP = 20  # between the query and its list
CAPTION = 14  # text line under each tile
TITLE = 22  # the protocol's title line
MARGIN = 8
COLOURS = {"correct": (0, 170, 0), "wrong": (220, 0, 0), "junk": (150, 150, 150), "query": (0, 0, 0)}


def parse_queries(text: str | None) -> list[int] | None:
    """'3,0,7' -> [3, 0, 7] (order kept, repeats dropped); one-line error otherwise."""
    if text is None:
        return None
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ReidkitError(f"--ranks-queries takes comma-separated query indices (0-based), got '{text}'") from None
    if not values or min(values) < 0:
        raise ReidkitError(f"--ranks-queries takes comma-separated query indices >= 0, got '{text}'")
    return list(dict.fromkeys(values))


def normalise_ranks(ranks) -> dict | None:
    """None, or {"n", "k", "queries"} (``queries``: chosen indices, else the worst n by AP)."""
    if not ranks:
        return None
    settings = {**DEFAULTS, **(ranks if isinstance(ranks, dict) else {})}
    if int(settings["k"]) < 1 or (settings["queries"] is None and int(settings["n"]) < 1):
        raise ReidkitError(f"ranked lists need k >= 1 and n >= 1, got {settings}")
    queries = None if settings["queries"] is None else [int(q) for q in settings["queries"]]
    return {"n": len(queries) if queries is not None else int(settings["n"]), "k": int(settings["k"]), "queries": queries}


def check_queries(store, protocols, queries):
    """Every chosen query index must exist in every protocol evaluated (before any work)."""
    from reidkit.evaluation.protocols import protocol_rows

    if not queries:
        return
    for p in protocols:
        trials = max(1, int(p.trials)) if p.gallery_sampling == "single_shot" else 1
        n_query = protocol_rows(store, p, False) // trials
        bad = [q for q in queries if q >= n_query]
        if bad:
            raise ReidkitError(f"--ranks-queries {bad[0]}: protocol '{p.name}' has {n_query} queries (indices 0..{n_query - 1})")


class RankedLists:
    """Collects, from the protocol's distance blocks, each query's AP and its nearest gallery units."""

    def __init__(self, query, gallery, rule, k=10, queries=None):
        from reidkit.evaluation.ranking import RankScorer

        self.query, self.gallery, self.rule, self.k = query, gallery, rule, int(k)
        self.scorer = RankScorer(gallery.person, gallery.camera, gallery.clothes if rule != "standard" else None, rule)
        self.ap = np.full(len(query), np.nan)
        self.order = None if queries is None else [int(q) for q in queries]
        self.wanted = None if queries is None else np.asarray(sorted(set(self.order)), np.int64)
        self.lists: dict[int, tuple] = {}

    def add_block(self, block, pairs):
        start, stop = pairs.start, pairs.start + len(block)
        scores = self.scorer.score_pairs(block, pairs)  # the pass's own bookkeeping, not looked up again
        self.ap[start + scores.query] = scores.ap
        rows = np.arange(len(block)) if self.wanted is None else self.wanted[(self.wanted >= start) & (self.wanted < stop)] - start
        if len(rows) == 0:
            return
        dropped = (pairs.real & ~pairs.is_pos)[rows].sum(1)
        width = min(block.shape[1], self.k + int(dropped.max()))  # k scored items lie within the first k + dropped
        kth = np.partition(block[rows], width - 1, axis=1)[:, width - 1]
        for i, r in enumerate(rows):
            self.lists[start + int(r)] = self._row(block[r], kth[i], pairs.same_idx[r][pairs.real[r]],
                                                   pairs.is_pos[r][pairs.real[r]])

    def _row(self, d, kth, same, same_pos):
        cand = np.flatnonzero(d <= kth)  # the nearest `width` (more where distances tie at the k-th)
        label = np.zeros(len(cand), np.int8)  # 0 wrong, 1 junk, 2 correct
        if len(same):
            by = np.argsort(same)
            at = np.clip(np.searchsorted(same[by], cand), 0, len(same) - 1)
            hit = same[by][at] == cand
            label[hit] = np.where(same_pos[by][at][hit], 2, 1)
        order = np.lexsort((cand, label > 0, d[cand]))  # distance, other persons first, position
        shown, scored = [], 0
        for j in order:
            if scored == self.k:
                break
            shown.append(j)
            scored += label[j] != 1
        names = ("wrong", "junk", "correct")
        return cand[shown], [names[label[j]] for j in shown], d[cand[shown]]

    def chosen(self, n=None) -> list[int]:
        """The queries shown: the chosen ones in the order given, else the n valid queries of lowest AP."""
        if self.order is not None:
            return list(self.order)
        valid = np.flatnonzero(~np.isnan(self.ap))
        order = valid[np.lexsort((valid, self.ap[valid]))]
        return [int(q) for q in order[: int(n)]]

    def entries(self, n=None, order=None) -> list[dict]:
        """JSON-ready lists: query (position), query_image (store index), ap, gallery, gallery_images, labels, distances."""
        picked = order if order is not None else self.chosen(n)
        out = []
        for qi in picked:
            gallery, labels, dist = self.lists[qi]
            ap = self.ap[qi]
            out.append({"query": int(qi), "query_image": int(self.query.images[qi]), "ap": None if np.isnan(ap) else float(ap),
                        "gallery": [int(g) for g in gallery], "gallery_images": [int(self.gallery.images[g]) for g in gallery],
                        "labels": labels, "distances": [float(x) for x in dist]})
        return out


def collector(settings):
    """A factory for verification.PassConsumers' ``extra``: the RankedLists it made are kept in ``.made``."""
    made = []

    def make(query, gallery, rule):
        lists = RankedLists(query, gallery, rule, settings["k"], settings["queries"])
        made.append(lists)
        return [lists]

    make.made = made
    return make


# -- the picture -------------------------------------------------------------------------------------------------
def _tile(image, colour):
    import cv2

    h, w = CELL
    out = np.empty((h + 2 * BORDER, w + 2 * BORDER, 3), np.uint8)
    out[:] = colour
    out[BORDER : BORDER + h, BORDER : BORDER + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out


def title_line(result: dict, settings: dict) -> str:
    how = (f"queries {', '.join(map(str, settings['queries']))}" if settings.get("queries") is not None
           else f"{len(result.get('ranked_lists', []))} worst queries by AP")
    return (f"protocol {result['protocol']} (rule {result['rule']}): {how}, top {settings['k']}; "
            "green correct, red wrong, grey junk (same person dropped by the rule, not counted)")


def layout(sections) -> tuple[int, int, list, list]:
    """(height, width, titles, boxes) of the picture: titles (section, x, y) of each title line; boxes
    (section, row, slot, label, x, y) of each tile's top-left corner (slot 0 the query, then the list in
    order). ``sections``: [(title, entries)]."""
    tile_h, tile_w = CELL[0] + 2 * BORDER, CELL[1] + 2 * BORDER
    y, width, titles, boxes = MARGIN, 0, [], []
    for s, (title, entries) in enumerate(sections):
        titles.append((s, MARGIN, y + 4))
        y += TITLE
        for r, e in enumerate(entries):
            x = MARGIN
            boxes.append((s, r, 0, "query", x, y))
            x += tile_w + QUERY_GAP
            for slot, label in enumerate(e["labels"], start=1):
                boxes.append((s, r, slot, label, x, y))
                x += tile_w + GAP
            width = max(width, x - GAP + MARGIN)
            y += tile_h + CAPTION
        y += MARGIN
    return y, max(width, 2 * MARGIN + tile_w), titles, boxes


def render(store, sections):
    """The picture of ``sections`` [(title, entries)] as an H x W x 3 uint8 RGB array, and layout()'s boxes."""
    from PIL import Image, ImageDraw, ImageFont

    height, width, titles, boxes = layout(sections)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(width, *(int(probe.textlength(t, font=font)) + 2 * MARGIN for t, _ in sections))
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    pen = ImageDraw.Draw(canvas)
    tile_h = CELL[0] + 2 * BORDER
    for s, x, y in titles:
        pen.text((x, y), sections[s][0], fill=(0, 0, 0), font=font)
    for s, r, slot, label, x, y in boxes:
        e = sections[s][1][r]
        if slot == 0:
            image, caption = store.image(e["query_image"]), f"q{e['query']}" + ("" if e["ap"] is None else f" AP {e['ap']:.2f}")
        else:
            image = store.image(e["gallery_images"][slot - 1])
            caption = "-" if label == "junk" else str(sum(1 for lab in e["labels"][:slot] if lab != "junk"))
        canvas.paste(Image.fromarray(_tile(image, COLOURS[label])), (x, y))
        pen.text((x + 2, y + tile_h + 1), caption, fill=(0, 0, 0), font=font)
    return np.asarray(canvas), boxes


def draw(store, sections, path):
    """Write the picture (PNG, atomically) of ``sections`` [(title, entries)]; returns layout()'s boxes."""
    from PIL import Image

    from reidkit.store.atomic import atomic_output

    rgb, boxes = render(store, sections)
    with atomic_output(path, replace=True) as partial:
        Image.fromarray(rgb).save(partial, format="PNG")
    return boxes


def picture(store, results: dict, settings: dict):
    """The RGB picture of every result's ``ranked_lists`` (one section per protocol), or None if there are none."""
    sections = [(title_line(r, settings), r["ranked_lists"]) for r in results.values() if r.get("ranked_lists")]
    return render(store, sections)[0] if sections else None
