"""``reidkit audit``: what a generated run really contains, measured with a trained Re-ID model (docs/audit.md).

Three questions, each answered by small functions on arrays (testable alone) and put together by :func:`audit_run`:

- identity kept: each item's feature against its source image's and its person's centroid (the mean of the
  person's real reference images' L2-normalised features, renormalised), and the rank of its own person among
  every reference person's centroid; beside the same figures for real images (the ceiling, leave-one-out) and
  for other persons (the floor) -- :func:`person_centroids`, :func:`identity_figures`, :func:`real_figures`;
- what changed where (mask-based generators): mean CIELAB deltaE76 inside and outside the clothing mask
  -- :func:`delta_e76`, :func:`mask_change`;
- diversity: the spread of one source's (or, identity-wise, one person's) generated features against the spread
  between real images of the same person, and the distinct target outfits -- :func:`mean_pairwise_distance`,
  :func:`spread`, :func:`outfit_counts`.

Reference images: the real images of the split the run was made from (``train`` for training runs), junk and
distractors left out. Items are measured kept and rejected alike; every summary is over kept items (what training
uses) except the filter section (kept against rejected) and the outside-the-mask check (every item: it is about
the generator, not the filter).
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.evaluation.plots import figure_png

AUDITS = "audits"  # STORE.parts/audits/RUN: the default output folder, where 'reidkit report' looks
AUDIT_JSON, ITEMS_CSV, HISTOGRAM_PNG, WORST_PNG = "audit.json", "items.csv", "identity-histogram.png", "worst-identity.png"
SOURCE_WISE, IDENTITY_WISE = "source-wise", "identity-wise"
BLOCK = 4096  # items whose similarities to every centroid are held at once

ITEM_COLUMNS = ("item", "source_index", "variant", "person", "pid", "camera", "target_clothes_key", "kept", "reject_reason",
                "source_cos", "centroid_cos", "rank", "nearest_other_cos", "nearest_other_pid", "margin",
                "delta_e_inside", "delta_e_outside", "delta_e_outside_max", "changed_pixels_outside")


# -- where an audit lives -----------------------------------------------------------------------------------------
def default_audit_dir(store, run_name: str) -> Path:
    """``STORE.parts/audits/RUN``: where ``reidkit audit`` writes without ``--out`` and where ``reidkit report`` looks."""
    return Path(store.parts_dir) / AUDITS / run_name


def find_audit(store, run_name: str) -> tuple[dict, Path] | None:
    """(the audit JSON, its folder) of run ``run_name`` in its default folder, or None (none, or unreadable)."""
    folder = default_audit_dir(store, run_name)
    try:
        data = json.loads((folder / AUDIT_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("store_fingerprint") != store.fingerprint or data.get("run") != run_name:
        return None  # left by a store written earlier to the same path
    return data, folder


# -- identity: figures on feature arrays ----------------------------------------------------------------------------
def unit(x) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), as float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def person_centroids(features, persons):
    """(persons P sorted, unit centroids P x D, sums of unit features P x D, images per person P).

    A person's centroid: the mean of its images' L2-normalised features, renormalised (= the unit sum)."""
    f = unit(features)
    persons = np.asarray(persons, dtype=np.int64)
    keys, where = np.unique(persons, return_inverse=True)
    sums = np.zeros((len(keys), f.shape[1]))
    np.add.at(sums, where, f)
    counts = np.bincount(where, minlength=len(keys))
    return keys, unit(sums) if len(keys) else sums, sums, counts


def _position(keys, persons) -> np.ndarray:
    """Row of each person in sorted ``keys``; -1 for a person not among them."""
    persons = np.asarray(persons, dtype=np.int64)
    if len(keys) == 0:
        return np.full(len(persons), -1, np.int64)
    pos = np.clip(np.searchsorted(keys, persons), 0, len(keys) - 1)
    return np.where(keys[pos] == persons, pos, -1)


def _rank_and_nearest(sims: np.ndarray, own: np.ndarray, pos: np.ndarray, keys: np.ndarray):
    """Per row: rank of the own person (1 + other persons strictly more similar than ``own``), the nearest other
    person and its similarity. ``sims``: rows x P similarities to every centroid; ``own``: the own similarity (may
    differ from ``sims``' own column: leave-one-out); rows with ``pos`` -1 or a NaN ``own`` get a NaN rank."""
    rows = np.arange(len(sims))
    valid = pos >= 0
    others = sims.copy()
    others[rows[valid], pos[valid]] = -np.inf
    if others.shape[1] == 0:
        return np.full(len(sims), np.nan), np.full(len(sims), np.nan), np.full(len(sims), -1, np.int64)
    nearest = np.argmax(others, axis=1)
    nearest_cos = others[rows, nearest]
    found = np.isfinite(nearest_cos)  # -inf: the own person is the only one
    rank = 1.0 + (others > own[:, None]).sum(axis=1)
    return (np.where(valid & np.isfinite(own), rank, np.nan), np.where(found, nearest_cos, np.nan),
            np.where(found, keys[nearest], -1))


def identity_figures(item_features, item_persons, real_features, real_persons, source_features=None) -> dict:
    """Per item: ``centroid_cos`` (to its person's centroid), ``rank`` of its person among every person's centroid
    (1 = kept; ties count in the item's favour), ``nearest_other_cos`` / ``nearest_other_person`` (the most similar
    other person's centroid: the floor), ``margin`` (centroid_cos - nearest_other_cos) and, given the items' source
    features (row i: item i's source), ``source_cos``. Centroids come from ``real_features`` / ``real_persons``
    (:func:`person_centroids`); an item whose person has no real image gets NaN."""
    keys, centroids, _, _ = person_centroids(real_features, real_persons)
    f = unit(item_features)
    pos = _position(keys, item_persons)
    out = {k: np.full(len(f), np.nan) for k in ("centroid_cos", "rank", "nearest_other_cos", "margin", "source_cos")}
    out["nearest_other_person"] = np.full(len(f), -1, np.int64)
    for start in range(0, len(f), BLOCK):
        part = slice(start, start + BLOCK)
        sims = f[part] @ centroids.T
        p = pos[part]
        own = np.where(p >= 0, sims[np.arange(len(sims)), np.maximum(p, 0)], np.nan)
        rank, nearest_cos, nearest_pid = _rank_and_nearest(sims, own, p, keys)
        out["centroid_cos"][part], out["rank"][part] = own, rank
        out["nearest_other_cos"][part], out["nearest_other_person"][part] = nearest_cos, nearest_pid
    out["margin"] = out["centroid_cos"] - out["nearest_other_cos"]
    if source_features is not None:
        out["source_cos"] = (f * unit(source_features)).sum(axis=1) if len(f) else np.zeros(0)
    return out


def real_figures(real_features, real_persons) -> dict:
    """Per real image, the ceiling and the floor the items are read against:

    - ``loo_cos``: similarity to its own person's centroid made without it (leave-one-out; NaN for a person with
      one image), ``loo_rank``: the own person's rank with that centroid among every other person's (full) centroid;
    - ``nearest_other_cos``: similarity to the most similar other person's centroid (the floor);
    - ``pair_same``: mean similarity to the person's other images (the ceiling of an item's ``source_cos``),
      ``pair_other``: mean similarity to every other person's images (its floor).
    """
    f = unit(real_features)
    persons = np.asarray(real_persons, dtype=np.int64)
    keys, centroids, sums, counts = person_centroids(f, persons)
    pos = _position(keys, persons)
    n_own = counts[pos].astype(np.float64)
    rest = sums[pos] - f  # the own person's sum without the image
    loo_cos = np.where(n_own > 1, (f * unit(rest)).sum(axis=1), np.nan)
    pair_same = np.where(n_own > 1, (f * rest).sum(axis=1) / np.maximum(n_own - 1, 1), np.nan)
    total = sums.sum(axis=0)
    n_other = len(f) - n_own
    pair_other = np.where(n_other > 0, (f @ total - (f * sums[pos]).sum(axis=1)) / np.maximum(n_other, 1), np.nan)
    out = {"loo_cos": loo_cos, "loo_rank": np.full(len(f), np.nan), "nearest_other_cos": np.full(len(f), np.nan),
           "pair_same": pair_same, "pair_other": pair_other}
    for start in range(0, len(f), BLOCK):
        part = slice(start, start + BLOCK)
        rank, nearest_cos, _ = _rank_and_nearest(f[part] @ centroids.T, loo_cos[part], pos[part], keys)
        out["loo_rank"][part], out["nearest_other_cos"][part] = rank, nearest_cos
    return out


# -- what changed where ---------------------------------------------------------------------------------------------
def delta_e76(rgb_a, rgb_b) -> np.ndarray:
    """HxW CIE76 colour distance between two HxWx3 uint8 RGB images: Euclidean distance in CIELAB (OpenCV's
    cvtColor of float32 RGB in [0, 1]: sRGB, D65; L in 0..100)."""
    import cv2

    a = cv2.cvtColor(np.asarray(rgb_a, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab).astype(np.float64)
    b = cv2.cvtColor(np.asarray(rgb_b, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab).astype(np.float64)
    return np.sqrt(((a - b) ** 2).sum(axis=-1))


def mask_change(source, generated, mask) -> dict:
    """How much ``generated`` differs from ``source`` inside and outside ``mask`` (HxW bool): mean deltaE76 inside
    (``inside``) and outside (``outside``), the largest outside (``outside_max``), the pixels changed at all
    outside (``changed_outside``: any byte differs) and the share of changed pixels inside (``changed_inside_share``).
    A region with no pixel gives NaN (0 changed pixels)."""
    source, generated, mask = np.asarray(source), np.asarray(generated), np.asarray(mask, dtype=bool)
    if source.shape != generated.shape or source.shape[:2] != mask.shape:
        raise ValueError(f"shapes differ: source {source.shape}, generated {generated.shape}, mask {mask.shape}")
    d = delta_e76(source, generated)
    changed = (source != generated).any(axis=-1)
    inside, outside = d[mask], d[~mask]
    return {"inside": float(inside.mean()) if inside.size else float("nan"),
            "outside": float(outside.mean()) if outside.size else float("nan"),
            "outside_max": float(outside.max()) if outside.size else float("nan"),
            "changed_outside": int(changed[~mask].sum()),
            "changed_inside_share": float(changed[mask].mean()) if inside.size else float("nan")}


def grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` with an elliptic kernel (as a generator's ``mask_dilate`` grows its mask)."""
    if int(pixels) <= 0:
        return mask
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(pixels) + 1, 2 * int(pixels) + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


# -- diversity ------------------------------------------------------------------------------------------------------
def mean_pairwise_distance(features) -> float:
    """Mean cosine distance (1 - cosine similarity) over every pair of distinct rows; NaN for fewer than 2 rows.

    Exact without the n x n matrix: with unit rows and s their sum, the pairs' similarities add up to |s|^2 - n."""
    f = unit(features) if len(features) else np.zeros((0, 1))
    n = len(f)
    if n < 2:
        return float("nan")
    s = f.sum(axis=0)
    norms = (f * f).sum(axis=1)  # 1, or 0 for a zero row
    return float(1.0 - (s @ s - norms.sum()) / (n * (n - 1)))


def group_rows(values) -> list[tuple[object, np.ndarray]]:
    """(value, the rows holding it) for each distinct value, values sorted; one sort, not one pass per value."""
    values = np.asarray(values)
    if len(values) == 0:
        return []
    uniq, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    return [(uniq[j], order[bounds[j]:bounds[j + 1]]) for j in range(len(uniq))]


def spread(features, groups) -> tuple[float, int]:
    """(mean over groups with at least 2 rows of their mean pairwise cosine distance, how many groups that is)."""
    features = np.asarray(features)
    values = [mean_pairwise_distance(features[rows]) for _, rows in group_rows(groups) if len(rows) >= 2]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def outfit_counts(target_keys, sources, source_keys=None) -> dict:
    """Distinct target outfits (non-empty keys), their mean number per source, and (given each item's source's own
    clothes key) the share of items whose target is the source's own outfit."""
    keys = np.asarray(target_keys, dtype=object)
    sources = np.asarray(sources)
    named = np.array([bool(k) for k in keys], bool)
    per_source = [len({k for k in keys[sources == s] if k}) for s in np.unique(sources)]
    out = {"distinct_targets": int(len({k for k in keys if k})), "items_with_target": int(named.sum()),
           "mean_targets_per_source": float(np.mean(per_source)) if per_source else float("nan")}
    if source_keys is not None:
        own = np.array([bool(k) and k == s for k, s in zip(keys, np.asarray(source_keys, dtype=object))], bool)
        out["share_own_outfit"] = float(own[named].mean()) if named.any() else float("nan")
    return out


# -- summaries ------------------------------------------------------------------------------------------------------
def _mean(x) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _median(x) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def _share(flags, valid) -> float | None:
    flags, valid = np.asarray(flags, bool), np.asarray(valid, bool)
    return float(flags[valid].mean()) if valid.any() else None


def identity_summary(figures: dict, rows=None) -> dict:
    """The items' identity figures summarised (means over the rows with a value; ``rows``: a boolean selection or
    row numbers; default all)."""
    rows = np.arange(len(figures["centroid_cos"])) if rows is None else np.asarray(rows)
    rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    rank = figures["rank"][rows]
    return {"items": int(len(rows)), "source_cos": _mean(figures["source_cos"][rows]),
            "centroid_cos": _mean(figures["centroid_cos"][rows]), "centroid_cos_median": _median(figures["centroid_cos"][rows]),
            "rank1_share": _share(rank == 1, np.isfinite(rank)), "mean_rank": _mean(rank),
            "nearest_other_cos": _mean(figures["nearest_other_cos"][rows]), "margin": _mean(figures["margin"][rows])}


def ceiling_and_floor(real: dict, persons_count: int) -> tuple[dict, dict]:
    """What a real image of the same person reaches (ceiling) and what another person does (floor)."""
    ranked = np.isfinite(real["loo_rank"])
    ceiling = {"images": int(np.isfinite(real["loo_cos"]).sum()), "centroid_cos": _mean(real["loo_cos"]),
               "centroid_cos_median": _median(real["loo_cos"]), "rank1_share": _share(real["loo_rank"] == 1, ranked),
               "mean_rank": _mean(real["loo_rank"]), "source_cos": _mean(real["pair_same"])}
    floor = {"images": int(np.isfinite(real["nearest_other_cos"]).sum()), "centroid_cos": _mean(real["nearest_other_cos"]),
             "centroid_cos_median": _median(real["nearest_other_cos"]),
             "rank1_share": 1.0 / persons_count if persons_count else None, "source_cos": _mean(real["pair_other"])}
    return ceiling, floor


def relative(value, ceiling, floor) -> float | None:
    """(value - floor) / (ceiling - floor): 1 = as close as a real image of the person, 0 = as close as another person."""
    if value is None or ceiling is None or floor is None or ceiling - floor <= 0:
        return None
    return float((value - floor) / (ceiling - floor))


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def reason_kind(reason: str) -> str:
    """A reject reason with its numbers as '#': 'reid-confidence: p(source id) # < tau #' counts as one kind."""
    return _NUMBER.sub("#", str(reason)).strip() or "(no reason given)"


def reason_counts(reasons, kept) -> dict:
    """Rejected items per reason kind (:func:`reason_kind`), most frequent first."""
    kinds = [reason_kind(r) for r, k in zip(reasons, kept) if not k]
    uniq, counts = np.unique(np.asarray(kinds, dtype=object), return_counts=True) if kinds else ([], [])
    order = sorted(zip(uniq, counts), key=lambda x: (-x[1], x[0]))
    return {str(k): int(c) for k, c in order}


def _mask_summary(changes: list, rows) -> dict:
    """Mean inside / outside deltaE over ``rows`` (row numbers) of the per-item ``changes`` (None where not measured)."""
    chosen = [changes[i] for i in rows if changes[i] is not None]
    return {"delta_e_inside": _mean([c["inside"] for c in chosen]), "delta_e_outside": _mean([c["outside"] for c in chosen])}


def grouped(keys, rows, figures: dict, changes: list | None, label=str) -> dict:
    """Per key among ``rows`` (a boolean selection), in key order: the identity summary, and the mask figures when
    measured."""
    chosen = np.flatnonzero(rows)
    out = {}
    for k, at in group_rows(np.asarray(keys)[chosen]):
        entry = identity_summary(figures, chosen[at])
        if changes is not None:
            entry.update(_mask_summary(changes, chosen[at]))
        out[label(k)] = entry
    return out


# -- the audit of one run -------------------------------------------------------------------------------------------
@dataclass
class Audit:
    """:func:`audit_run`'s result: the JSON summary, the per-item rows, and what the pictures need."""

    summary: dict
    rows: list[dict]
    generated_cos: np.ndarray  # kept items' centroid_cos
    ceiling_cos: np.ndarray  # real images' leave-one-out centroid_cos
    floor_cos: np.ndarray  # real images' nearest other person's centroid_cos
    worst: list[int] = field(default_factory=list)  # item numbers, worst kept identity first
    nearest_image: dict = field(default_factory=dict)  # worst item -> a real image of its nearest other person
    lines: list[str] = field(default_factory=list)  # what the command says (one line each)


def check_model_config(config, where) -> None:
    """One line unless ``config`` is an image model's training configuration ``reidkit eval --checkpoint`` reads."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict) or "class_pids" not in config["data"]:
        raise ReidkitError(f"{where}/config.yaml is not a training run's configuration (no data.class_pids); expected "
                           "the --out folder of 'reidkit train' or 'reidkit import-checkpoint'")
    clip = int(config.get("clip_len") or 0)
    if clip > 0:
        raise ReidkitError(f"{where} is a video model (clip_len {clip}: it reads clips of a tracklet's frames); the audit "
                           "feeds it single generated images: give an image model (trained with clip_len 0)")
    for key in ("height", "width"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ReidkitError(f"{where}/config.yaml has no usable input {key} (got {value!r}); expected the image size "
                               "the model was trained on (a 'reidkit train' run)")


def check_model(model_dir, select: str = "last") -> dict:
    """The model folder's configuration, checked before anything loads (:func:`check_model_config`, weights present)."""
    from reidkit.training.checkpoint import MODEL_FILE, read_config

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ReidkitError(f"model {model_dir} does not exist; expected the --out folder of 'reidkit train'")
    config = read_config(model_dir)
    check_model_config(config, model_dir)
    weights = model_dir / ("best" if select == "best" else "") / MODEL_FILE
    if not weights.is_file():
        raise ReidkitError(f"{model_dir} has no {weights.relative_to(model_dir)} (training has not finished an epoch"
                           + (", or ran without --eval-every" if select == "best" else "") + ")")
    return config


def check_run(run) -> np.ndarray:
    """The run's kept flags; one line for a run with no items or no kept item (there is nothing to audit)."""
    n = len(run) if run.files else 0
    if n == 0:
        raise ReidkitError(f"generated run '{run.name}' has no items yet (nothing to audit; finish 'reidkit expand' first)")
    kept = run.kept()
    if not kept.any():
        reasons = reason_counts(run.column("reject_reason"), kept)
        top = ", ".join(f"{k} ({v})" for k, v in list(reasons.items())[:3])
        raise ReidkitError(f"generated run '{run.name}' has no kept items ({n} items, all rejected: {top}); nothing to audit")
    return kept


def run_mode(run) -> str:
    """``identity-wise`` when the run's generator plans its own items per identity (``plan``: diffusion-reid), else
    ``source-wise`` (each item a variant of one source image: recolor, dlcr, an imported release)."""
    from reidkit.contracts import CONTRACTS
    from reidkit.plugin_manager import get_plugins

    name = run.info.get("generator") or run.settings.get("generator")
    try:
        cls = get_plugins().get("generators", str(name))
    except Exception:  # an imported release or a generator not installed here: items name their source
        return SOURCE_WISE
    return IDENTITY_WISE if CONTRACTS["generators"].has(cls, "plan") else SOURCE_WISE


def reference_images(store, split: str) -> np.ndarray:
    """The split's real images that stand for their person: junk and distractors left out."""
    idx = np.asarray(store.split(split), dtype=np.int64)
    return idx[~np.asarray(store.junk)[idx] & ~np.asarray(store.distractor)[idx]]


@dataclass
class Measured:
    """The features an audit compares: reference images, each item's source, each item (rows follow the run)."""

    real_idx: np.ndarray  # store indices of the reference images
    real_persons: np.ndarray  # their person keys
    real: np.ndarray  # their features
    sources: np.ndarray  # store index of each item's source
    item_persons: np.ndarray  # person key of each item (its source's)
    source: np.ndarray  # each item's source features
    items: np.ndarray  # each item's features


def measure_features(store, run, model, split: str, batch_size: int = 128) -> Measured:
    """Every reference image, every source outside the reference images and every item, through ``model`` once."""
    from reidkit.evaluation.protocols import person_keys

    real_idx = reference_images(store, split)
    if len(real_idx) == 0:
        raise ReidkitError(f"split '{split}' of store {store.path} has no usable real image: no centroid to compare with")
    person = person_keys(store)
    sources = run.source_index()

    def extract(source, idx, what):
        return model.extract_source(source, idx, batch_size=batch_size, description=what)

    real = extract(store, real_idx, "real images")
    row_of = {int(i): r for r, i in enumerate(real_idx)}
    extra = np.array(sorted({int(s) for s in sources} - set(row_of)), dtype=np.int64)  # sources outside the reference
    extra_feats = extract(store, extra, "source images") if len(extra) else np.zeros((0, real.shape[1]))
    row_of.update({int(i): len(real_idx) + r for r, i in enumerate(extra)})
    source = np.concatenate([real, extra_feats])[[row_of[int(s)] for s in sources]]
    return Measured(real_idx, person[real_idx], real, sources, person[sources], source,
                    extract(run, np.arange(len(run)), "generated items"))


def diversity_section(m: Measured, kept: np.ndarray, mode: str) -> dict:
    """Spread of the generated features within a source (identity-wise: a person) against the spread between real
    images of a person (source-wise: the run's sources; identity-wise: the person's reference images)."""
    if mode == IDENTITY_WISE:
        within, groups = spread(m.items[kept], m.item_persons[kept])
        between, real_groups = spread(m.real, m.real_persons)
    else:
        within, groups = spread(m.items[kept], m.sources[kept])
        _, first = np.unique(m.sources[kept], return_index=True)
        between, real_groups = spread(m.source[kept][first], m.item_persons[kept][first])
    ratio = within / between if np.isfinite(within) and np.isfinite(between) and between > 0 else None
    return {"grouped_by": "person" if mode == IDENTITY_WISE else "source", "within_generated": within, "groups": groups,
            "between_real": between, "real_groups": real_groups, "ratio": ratio}


def per_person_section(store, m: Measured, kept: np.ndarray, figs: dict, real: dict) -> dict:
    """Per person of the run: items made, kept, rejected, the kept items' identity figures, the person's ceiling."""
    real_rows = dict(group_rows(m.real_persons))
    out = {}
    for p, rows in group_rows(m.item_persons):
        mine = real_rows.get(p, np.zeros(0, np.int64))
        entry = identity_summary(figs, rows[kept[rows]])
        entry.update(made=len(rows), kept=int(kept[rows].sum()), rejected=int((~kept[rows]).sum()),
                     ceiling_centroid_cos=_mean(real["loo_cos"][mine]), real_images=len(mine))
        out[person_label(store, int(m.sources[rows[0]]))] = entry
    return out


def filter_section(run, kept: np.ndarray, figs: dict) -> dict:
    """What the run's filters kept and rejected: counts, reason kinds, identity figures of kept against rejected."""
    return {"kept": int(kept.sum()), "rejected": int((~kept).sum()), "reasons": reason_counts(run.column("reject_reason"), kept),
            "filters": [f.get("name") for f in run.settings.get("filters") or [] if isinstance(f, dict)],
            "kept_figures": identity_summary(figs, kept), "rejected_figures": identity_summary(figs, ~kept)}


def item_rows(store, run, m: Measured, kept, figs: dict, changes, first_real: dict) -> list[dict]:
    """One row per item (``ITEM_COLUMNS``); None where a figure is not measured."""
    pids, cameras = np.asarray(store.pid), np.asarray(store.camera)
    variants, targets, reasons = run.variant(), run.column("target_clothes_key"), run.column("reject_reason")
    rows = []
    for i, s in enumerate(m.sources.tolist()):
        c = changes[i] if changes is not None else None
        near = first_real.get(int(figs["nearest_other_person"][i]))
        rows.append({"item": i, "source_index": s, "variant": int(variants[i]), "person": int(m.item_persons[i]),
                     "pid": int(pids[s]), "camera": int(cameras[s]), "target_clothes_key": str(targets[i]),
                     "kept": bool(kept[i]), "reject_reason": str(reasons[i]),
                     "source_cos": _num(figs["source_cos"][i]), "centroid_cos": _num(figs["centroid_cos"][i]),
                     "rank": int(figs["rank"][i]) if np.isfinite(figs["rank"][i]) else None,
                     "nearest_other_cos": _num(figs["nearest_other_cos"][i]),
                     "nearest_other_pid": int(pids[near]) if near is not None else None, "margin": _num(figs["margin"][i]),
                     "delta_e_inside": _num(c["inside"]) if c else None, "delta_e_outside": _num(c["outside"]) if c else None,
                     "delta_e_outside_max": _num(c["outside_max"]) if c else None,
                     "changed_pixels_outside": c["changed_outside"] if c else None})
    return rows


def audit_run(store, run, model, *, model_path=None, worst: int = 12, batch_size: int = 128, progress: bool = True) -> Audit:
    """Measure every item of ``run`` (a store's generated run) with ``model`` (a loaded ReidModelRunner); the summary
    over kept items, the per-item rows, what the pictures need."""
    kept = check_run(run)
    mode = run_mode(run)
    split = str(run.info.get("split") or run.settings.get("split") or "train")
    m = measure_features(store, run, model, split, batch_size)
    figs = identity_figures(m.items, m.item_persons, m.real, m.real_persons, m.source)
    real = real_figures(m.real, m.real_persons)
    persons_count = len(np.unique(m.real_persons))
    notes = []
    unknown = int(np.isnan(figs["rank"]).sum())
    if unknown:
        notes.append(f"{unknown} items belong to persons with no real image in split '{split}': no identity figures for them")
    changes, mask_section = measure_masks(store, run, m.sources, notes, progress)

    generated = identity_summary(figs, kept)
    ceiling, floor = ceiling_and_floor(real, persons_count)
    relative_figures = {k: relative(generated[k], ceiling[k], floor[k]) for k in ("centroid_cos", "source_cos", "rank1_share")}
    variants, targets = run.variant(), run.column("target_clothes_key")
    diversity = diversity_section(m, kept, mode)
    diversity.update(outfit_counts(targets[kept], m.sources[kept], np.asarray(store.clothes_key, dtype=object)[m.sources][kept]))
    first_real = {}  # person -> its first reference image (the contact sheet's "nearest other person")
    for p, i in zip(m.real_persons.tolist(), m.real_idx.tolist()):
        first_real.setdefault(int(p), int(i))
    config = getattr(model, "config", None) or {}
    summary = {
        "store": str(Path(store.path).resolve()), "store_fingerprint": store.fingerprint, "run": run.name,
        "generator": run.info.get("generator"), "mode": mode,
        "model": {"path": str(Path(model_path).resolve()) if model_path else None, "weights": getattr(model, "weights", None),
                  "epoch": getattr(model, "epoch", None), "flip": bool(getattr(model, "flip", False)),
                  "trained_on_this_store": config.get("store_fingerprint") == store.fingerprint},
        "reference": {"split": split, "images": int(len(m.real_idx)), "persons": int(persons_count)},
        "items": {"total": int(len(run)), "kept": int(kept.sum()), "rejected": int((~kept).sum())},
        "identity": {"generated": generated, "ceiling": ceiling, "floor": floor, "relative": relative_figures},
        "mask_change": mask_section, "diversity": diversity,
        "per_variant": grouped(variants, kept, figs, changes, label=lambda v: str(int(v))),
        "per_target": grouped(targets, kept & (targets != ""), figs, changes),  # items with a target outfit
        "per_person": per_person_section(store, m, kept, figs, real) if mode == IDENTITY_WISE else None,
        "filter": filter_section(run, kept, figs), "notes": notes,
    }
    order = np.flatnonzero(kept & np.isfinite(figs["centroid_cos"]))
    order = order[np.argsort(figs["centroid_cos"][order], kind="stable")][: max(0, int(worst))]
    nearest = {int(i): first_real[int(figs["nearest_other_person"][i])] for i in order
               if int(figs["nearest_other_person"][i]) in first_real}
    return Audit(_clean(summary), item_rows(store, run, m, kept, figs, changes, first_real), figs["centroid_cos"][kept],
                 real["loo_cos"], real["nearest_other_cos"], [int(i) for i in order], nearest, summary_lines(_clean(summary)))


def person_label(store, index: int) -> str:
    """How the JSON names the person of store image ``index``: its pid; ``SOURCE/pid`` in a store combining several."""
    source = getattr(store, "columns", {}).get("source")
    if source is None or len(np.unique(source)) < 2:
        return str(int(store.pid[index]))
    return f"{int(source[index])}/{int(store.pid[index])}"


def measure_masks(store, run, sources, notes: list, progress: bool = True):
    """(per-item mask changes or None, the ``mask_change`` section): measured when the run's settings name a mask set."""
    name = run.settings.get("mask_set")
    if not name:
        return None, {"measured": False, "reason": "the run names no mask set (its generator repaints no mask)"}
    sets = store.mask_sets()
    if name not in sets:
        notes.append(f"mask set '{name}' the run was made with is not in the store: mask change not measured")
        return None, {"measured": False, "mask_set": name, "reason": f"mask set '{name}' is not in the store"}
    masks = sets[name]
    dilate = int((run.settings.get("generator_settings") or {}).get("mask_dilate") or 0)
    from reidkit.progress import progress_bar

    changes = []
    with progress_bar(len(sources) if progress else 0, "mask change", "img") as update:
        for i, s in enumerate(sources.tolist()):
            source, generated = (store.image(s), run.image(i)) if s in masks else (None, None)
            measurable = source is not None and source.shape == generated.shape  # an imported item may differ in size
            changes.append(mask_change(source, generated, grown(masks.clothing_mask(s), dilate)) if measurable else None)
            update(advance=1)
    measured = [c for c in changes if c is not None]
    if len(measured) < len(changes):
        notes.append(f"{len(changes) - len(measured)} items left out of the mask change (no mask for their source in "
                     f"'{name}', or another size than their source)")
    changed = [i for i, c in enumerate(changes) if c is not None and c["changed_outside"] > 0]
    worst = max(changed, key=lambda i: changes[i]["outside_max"]) if changed else None
    kept = run.kept()
    section = {"measured": True, "mask_set": name, "dilate": dilate, "items_measured": len(measured),
               "items_without_mask": int(sum(c is None for c in changes)),
               "delta_e_inside": _mean([c["inside"] for c, k in zip(changes, kept) if c is not None and k]),
               "delta_e_inside_median": _median([c["inside"] for c, k in zip(changes, kept) if c is not None and k]),
               "changed_inside_share": _mean([c["changed_inside_share"] for c, k in zip(changes, kept) if c is not None and k]),
               "delta_e_outside": _mean([c["outside"] for c in measured]),
               "delta_e_outside_max": max((c["outside_max"] for c in measured if np.isfinite(c["outside_max"])), default=None),
               "items_changed_outside": len(changed), "pixels_changed_outside": int(sum(changes[i]["changed_outside"] for i in changed)),
               "worst_item_outside": worst, "outside_zero": not changed}
    return changes, section


def summary_lines(s: dict) -> list[str]:
    """The command's human summary: one line per figure that matters (the outside-the-mask line first)."""
    lines = []
    m = s["mask_change"]
    if m.get("measured"):
        if m["outside_zero"]:
            lines.append(f"outside the clothing mask ('{m['mask_set']}'): unchanged in all {m['items_measured']} items measured "
                         "(deltaE76 0)")
        else:
            lines.append(f"CHANGED OUTSIDE THE MASK: {m['items_changed_outside']} of {m['items_measured']} items changed pixels "
                         f"outside the clothing mask '{m['mask_set']}' (largest deltaE76 {m['delta_e_outside_max']:.2f}, "
                         f"item {m['worst_item_outside']})")
        if m["delta_e_inside"] is not None:
            lines.append(f"inside the clothing mask: mean deltaE76 {m['delta_e_inside']:.1f} over kept items")
    g, c, f = (s["identity"][k] for k in ("generated", "ceiling", "floor"))

    def fmt(v, pct=False):
        return "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    lines.append(f"identity ({s['items']['kept']} kept items, {s['reference']['persons']} persons of split "
                 f"'{s['reference']['split']}'): centroid cos {fmt(g['centroid_cos'])} (real {fmt(c['centroid_cos'])}, "
                 f"other person {fmt(f['centroid_cos'])}); rank-1 {fmt(g['rank1_share'], True)} (real "
                 f"{fmt(c['rank1_share'], True)}, chance {fmt(f['rank1_share'], True)}); source cos {fmt(g['source_cos'])} "
                 f"(real pairs {fmt(c['source_cos'])}, other persons {fmt(f['source_cos'])})")
    d = s["diversity"]
    lines.append(f"diversity: spread within a {d['grouped_by']} {fmt(d['within_generated'])} against {fmt(d['between_real'])} "
                 f"between real images of a person; {d['distinct_targets']} distinct target outfits")
    fl = s["filter"]
    if fl["rejected"]:
        reasons = ", ".join(f"{k} ({v})" for k, v in list(fl["reasons"].items())[:3])
        lines.append(f"filter: {fl['kept']} kept, {fl['rejected']} rejected ({reasons}); centroid cos kept "
                     f"{fmt(fl['kept_figures']['centroid_cos'])}, rejected {fmt(fl['rejected_figures']['centroid_cos'])}")
    lines += [f"note: {n}" for n in s["notes"]]
    return lines


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _clean(value):
    """JSON-safe: NaN and infinities as null, numpy numbers as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


# -- outputs (bytes; the command writes them) ---------------------------------------------------------------------
def items_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ITEM_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else r[k] for k in ITEM_COLUMNS})
    return buffer.getvalue()


def histogram_png(audit: Audit, title: str) -> bytes:
    """Identity similarity of kept generated items against the real ceiling (leave-one-out) and the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("generated (kept items): own person's centroid", audit.generated_cos, "#d9480f"),
              ("real images: own person's centroid without them (ceiling)", audit.ceiling_cos, "#2b8a3e"),
              ("real images: nearest other person's centroid (floor)", audit.floor_cos, "#5c7cfa")]
    series = [(label, np.asarray(v, float)[np.isfinite(np.asarray(v, float))], c) for label, v, c in series]
    values = np.concatenate([v for _, v, _ in series]) if any(len(v) for _, v, _ in series) else np.zeros(1)
    lo, hi = float(values.min()), float(values.max())
    bins = np.linspace(lo - 1e-6, hi + 1e-6, 31)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100, layout="constrained")
    for label, v, colour in series:
        if len(v):
            ax.hist(v, bins=bins, density=True, alpha=0.45, color=colour, label=f"{label} (n {len(v)}, mean {v.mean():.3f})")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    return figure_png(fig)


def worst_sheet(audit: Audit, store, run):
    """RGB contact sheet: per worst-kept item, its source, the item, and a real image of the nearest other person."""
    from reidkit.generation.contact_sheet import render_sheet

    rows = []
    for i in audit.worst:
        r = audit.rows[i]
        row = [{"image": store.image(r["source_index"]), "caption": f"source #{r['source_index']} pid {r['pid']}",
                "column": (0, "source")},
               {"image": run.image(i), "column": (1, "generated (worst identity first)"),
                "caption": f"item {i} v{r['variant']} cos {_fmt(r['centroid_cos'])} rank {r['rank']}"
                           + (f" {r['target_clothes_key']}" if r["target_clothes_key"] else "")}]
        near = audit.nearest_image.get(i)
        if near is not None:
            row.append({"image": store.image(near), "column": (2, "nearest other person"),
                        "caption": f"pid {r['nearest_other_pid']} cos {_fmt(r['nearest_other_cos'])}"})
        rows.append(row)
    return render_sheet(rows) if rows else None


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"
