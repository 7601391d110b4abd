"""Evaluating a features set with the protocols a store defines (rule, camera subsets, sampling, unit)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.evaluation.distance import DistanceComputer, check_metric
from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator, check_rule

METRIC_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")
RERANK_DEFAULTS = {"k1": 20, "k2": 6, "lambda": 0.3}


@dataclass
class EvalSet:
    """Query or gallery units (images, or tracklets with averaged features) of one protocol."""

    features: np.ndarray
    person: np.ndarray  # person key: (source, pid) folded into one integer
    camera: np.ndarray
    clothes: np.ndarray
    images: np.ndarray  # store index of each unit's first image

    def take(self, rows):
        return EvalSet(self.features[rows], self.person[rows], self.camera[rows], self.clothes[rows], self.images[rows])

    def __len__(self):
        return len(self.person)


def select_protocols(store, names=None) -> list:
    """The store's protocols named in ``names`` (comma lists allowed), default all of them."""
    defined = {p.name: p for p in store.protocols}
    if not defined:
        raise ReidkitError(f"store {store.path} defines no evaluation protocol")
    if not names:
        return list(defined.values())
    wanted = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    unknown = [n for n in wanted if n not in defined]
    if unknown:
        raise ReidkitError(f"protocol '{unknown[0]}' is not defined by store {store.path} (defined: {', '.join(defined)})")
    return [defined[n] for n in dict.fromkeys(wanted)]


def person_keys(store) -> np.ndarray:
    """One integer per image identifying the person: pid namespaced by source when stores combine."""
    pid = np.asarray(store.pid, np.int64)
    source = getattr(store, "columns", {}).get("source")
    return pid if source is None else pid + (np.asarray(source, np.int64) << 40)


def _split_images(store, split, cameras, role, protocol):
    idx = store.split(split)
    idx = idx[~np.asarray(store.junk)[idx]]  # junk never enters query or gallery
    if cameras is not None:
        idx = idx[np.isin(np.asarray(store.camera)[idx], cameras)]
    if len(idx) == 0:
        raise ReidkitError(f"protocol '{protocol.name}' has no {role} images in split '{split}'")
    return idx


def build_set(store, idx, features, row_of, unit, role, protocol) -> EvalSet:
    _check_rows(store, idx, row_of, role, protocol)
    rows = row_of[idx]
    person, camera, clothes = person_keys(store)[idx], np.asarray(store.camera)[idx], np.asarray(store.clothes_id)[idx]
    feats = features[rows]
    if unit == "tracklet":
        tracklet = np.asarray(store.tracklet)[idx]
        if (tracklet < 0).any():
            raise ReidkitError(f"protocol '{protocol.name}' evaluates tracklets but {int((tracklet < 0).sum())} {role} images have none")
        # A tracklet id is only unique within a person and camera in some datasets: group by all three.
        keys = np.stack([person, camera, tracklet], axis=1)
        _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        group = group.ravel()
        sums = np.zeros((len(first), feats.shape[1]), np.float64)
        np.add.at(sums, group, feats)
        feats = (sums / np.bincount(group)[:, None]).astype(features.dtype)
        idx, person, camera, clothes = idx[first], person[first], camera[first], clothes[first]
    return EvalSet(feats, person, camera, clothes, idx)


def single_shot(gallery: EvalSet, rng) -> EvalSet:
    """One random gallery unit per person."""
    order = rng.permutation(len(gallery))
    _, first = np.unique(gallery.person[order], return_index=True)
    return gallery.take(np.sort(order[first]))


def distance_blocks(query: EvalSet, gallery: EvalSet, distance, rerank, device, on_rows=None):
    if rerank:
        from reidkit.evaluation.rerank import KReciprocal

        return KReciprocal(query.features, gallery.features, k1=rerank["k1"], k2=rerank["k2"], lambda_=rerank["lambda"],
                           metric=distance, device=device, progress=on_rows).chunks(tensors=None)
    return DistanceComputer(gallery.features, distance, device).chunks(query.features)


def score_sets(query: EvalSet, gallery: EvalSet, rule, distance="cosine", rerank=None, device="cpu", max_rank=50,
               on_rows: Callable[[int], None] | None = None, consumers=()) -> dict:
    """Rank and score every query block; ``consumers`` (objects with ``add_block(block, pairs)``: verification,
    ranked lists) get the same blocks, on the host, with the rule's pair bookkeeping: one pass over the distances."""
    clothes_rule = rule != "standard"
    g_clothes = gallery.clothes if clothes_rule else None
    scorer = RankScorer(gallery.person, gallery.camera, g_clothes, rule)
    acc = ScoreAccumulator(max_rank)
    for start, block in distance_blocks(query, gallery, distance, rerank, device, on_rows):
        stop = start + len(block)
        q_clothes = query.clothes[start:stop] if clothes_rule else None
        pairs = scorer.pairs(start, query.person[start:stop], query.camera[start:stop], q_clothes)
        acc.add(scorer.score_pairs(block, pairs), start)
        if consumers:
            host = block if isinstance(block, np.ndarray) else block.cpu().numpy()  # a GPU's block: counted on the host
            for consumer in consumers:
                consumer.add_block(host, pairs)
        if on_rows:
            on_rows(len(block))
    return acc.summary()


def _average(trials: list[dict]) -> dict:
    out = {k: float(np.mean([t[k] for t in trials])) for k in METRIC_KEYS}
    out["valid_queries"] = int(round(np.mean([t["valid_queries"] for t in trials])))
    out["cmc"] = [float(c) for c in np.mean([t["cmc"] for t in trials], axis=0)]
    return out


def normalise_rerank(rerank) -> dict | None:
    if not rerank:
        return None
    settings = dict(RERANK_DEFAULTS)
    settings.update({("lambda" if k in ("lambda_", "lambda_value") else k): v for k, v in dict(rerank).items()})
    if int(settings["k1"]) < 1 or int(settings["k2"]) < 1 or not 0.0 <= float(settings["lambda"]) <= 1.0:
        raise ReidkitError(f"re-ranking needs k1 >= 1, k2 >= 1 and 0 <= lambda <= 1, got {settings}")
    return {"k1": int(settings["k1"]), "k2": int(settings["k2"]), "lambda": float(settings["lambda"])}


def evaluate_protocol(store, protocol, features, row_of, distance="cosine", rerank=None, device="cpu", seed=0,
                      max_rank=50, on_rows=None, consumers=None) -> dict:
    """One protocol's metrics. ``consumers(query, gallery, rule, trial)``: what else reads each gallery trial's
    distance blocks in the same pass (verification.PassConsumers)."""
    rule = check_rule(protocol.rule)
    q_idx = _split_images(store, protocol.query, protocol.query_cameras, "query", protocol)
    g_idx = _split_images(store, protocol.gallery, protocol.gallery_cameras, "gallery", protocol)
    query = build_set(store, q_idx, features, row_of, protocol.unit, "query", protocol)
    gallery = build_set(store, g_idx, features, row_of, protocol.unit, "gallery", protocol)
    if rule != "standard" and ((query.clothes < 0).any() or (gallery.clothes < 0).any()):
        raise ReidkitError(f"protocol '{protocol.name}' uses rule '{rule}' but the store has images without clothes labels")
    if protocol.gallery_sampling == "single_shot":
        trials = max(1, int(protocol.trials))
        galleries = [single_shot(gallery, np.random.default_rng([seed, t])) for t in range(trials)]
        result = _average([score_sets(query, g, rule, distance, rerank, device, max_rank, on_rows,
                                      consumers(query, g, rule, t) if consumers else ()) for t, g in enumerate(galleries)])
        gallery = galleries[0]  # every trial has one unit per person
    elif protocol.gallery_sampling == "all":
        trials = 1
        result = score_sets(query, gallery, rule, distance, rerank, device, max_rank, on_rows,
                            consumers(query, gallery, rule, 0) if consumers else ())
    else:
        raise ReidkitError(f"protocol '{protocol.name}' has unknown gallery_sampling '{protocol.gallery_sampling}' (all, single_shot)")
    result.update(protocol=protocol.name, rule=rule, unit=protocol.unit, queries=len(query), gallery=len(gallery),
                  gallery_sampling=protocol.gallery_sampling, trials=trials, seed=seed, distance=distance, rerank=rerank)
    return result


def protocol_rows(store, protocol, rerank=False) -> int:
    """Rows ``evaluate_protocol`` reports through ``on_rows``: queries scored, plus the re-ranking k-NN pass."""
    def units(split, cameras, role):
        idx = _split_images(store, split, cameras, role, protocol)
        if protocol.unit != "tracklet":
            return len(idx)
        return len(np.unique(np.stack([person_keys(store)[idx], np.asarray(store.camera)[idx], np.asarray(store.tracklet)[idx]]), axis=1)[0])

    n_query = units(protocol.query, protocol.query_cameras, "query")
    if protocol.gallery_sampling == "single_shot":
        n_gallery = len(np.unique(person_keys(store)[_split_images(store, protocol.gallery, protocol.gallery_cameras, "gallery", protocol)]))
        trials = max(1, int(protocol.trials))
    else:
        n_gallery, trials = units(protocol.gallery, protocol.gallery_cameras, "gallery"), 1
    return trials * (n_query + (n_query + n_gallery if rerank else 0))


def evaluate_store(store, features: np.ndarray, index: np.ndarray, protocols: list[str] | None = None,
                   distance: str = "cosine", rerank: dict | None = None, device: str = "cpu", seed: int = 0,
                   max_rank: int = 50, on_rows: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Evaluate features (rows = store images ``index``) with the store's protocols.

    Returns {protocol name: {rank1, rank5, rank10, mAP, mINP (fractions), valid_queries,
    cmc (ranks 1..max_rank), distance, rerank, ...}}. ``rerank``: None or a dict with
    k1, k2, lambda (defaults 20, 6, 0.3). Single-shot protocols average seeded trials
    (trial t draws with numpy's default_rng([seed, t])).
    """
    features, row_of, selected = validate_inputs(store, features, index, protocols, distance)
    rerank = normalise_rerank(rerank)
    return {p.name: evaluate_protocol(store, p, features, row_of, distance, rerank, device, seed, max_rank, on_rows)
            for p in selected}


def validate_inputs(store, features, index, protocols=None, distance="cosine"):
    """Every check that can fail on input, before any work: (features, row of each store image, protocols)."""
    from reidkit.evaluation.features import check_features

    check_metric(distance)
    selected = select_protocols(store, protocols)
    features, row_of = check_features(features, index, len(store))
    for p in selected:
        for split, cameras, role in ((p.query, p.query_cameras, "query"), (p.gallery, p.gallery_cameras, "gallery")):
            _check_rows(store, _split_images(store, split, cameras, role, p), row_of, role, p)
    return features, row_of, selected


def _check_rows(store, idx, row_of, role, protocol):
    missing = idx[row_of[idx] < 0]
    if len(missing):
        raise ReidkitError(
            f"features file lacks {len(missing)} of {len(idx)} {role} images of protocol '{protocol.name}' "
            f"(first: store index {missing[0]}, {store.columns['path'][missing[0]]})"
        )
