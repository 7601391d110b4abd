"""Alpha-weighted query expansion (AQE), as fast-reid's ``fastreid/evaluation/query_expansion.py`` ``aqe``.

Definition (fast-reid's code, one expansion pass, its default ``QE_TIME`` 1): query and gallery features are
stacked into one set X (raw features, as the model gives them). For each item i, its k nearest items in X by
cosine similarity s(i, j) = <x_i / |x_i|, x_j / |x_j|> are taken, the item itself included (it is its own
nearest, s = 1, so it enters with weight 1: k = 5 is the item and 4 neighbours, which may be queries as well as
gallery items); the expanded feature is the mean over those k items of x_j * s(i, j) ** alpha (raw features,
not renormalised; cosine distance normalises them afterwards, euclidean sees them as they are). Every item is
expanded, gallery items too. fast-reid's defaults: k 5, alpha 3.

Two things fast-reid leaves open are fixed here: ties at the k-th place are broken by the lower index
(fast-reid's ``argpartition`` picks any; "nearest" is by the cosine distance 1 - s, clamped to [0, 2], as
everywhere in reidkit, so similarities that round to the same distance tie), and an image listed as both
query and gallery of a protocol is one item (fast-reid's concatenation would hold it twice).

Memory: the k nearest items come from re-ranking's k-NN pass (rerank._knn_pass), never the full N x N
similarity matrix (N = query + gallery items): square blocks of 4,096 x 4,096 similarities (64 MiB in
float32; 8,192 on a GPU), each row's k nearest so far (N x k), then the neighbours' features gathered for
2^22 / (k D) rows at a time (16 MiB in float32), beside the features, their L2-normalised copy and the output
(three N x D arrays). At MSMT17 scale (93,820 items, 2048-d, float32) that is 3 x 768 MiB + about 100 MiB.
The cost is the k-NN pass's (half the N x N x D product thanks to symmetry, 9e12 multiply-adds there, about
as long as re-ranking's k-NN pass: docs/eval.md), on ``device``.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError

DEFAULTS = {"k": 5, "alpha": 3.0}


def normalise_aqe(aqe) -> dict | None:
    """None, or {"k": int >= 1, "alpha": float >= 0} from a dict / True (fast-reid's defaults: k 5, alpha 3)."""
    if not aqe:
        return None
    settings = dict(DEFAULTS)
    if isinstance(aqe, dict):
        settings.update(aqe)
    k, alpha = settings["k"], settings["alpha"]
    if int(k) != k or int(k) < 1 or not float(alpha) >= 0.0:
        raise ReidkitError(f"query expansion needs k >= 1 and alpha >= 0, got k={k} alpha={alpha}")
    return {"k": int(k), "alpha": float(alpha)}


def expand(features: np.ndarray, k: int = 5, alpha: float = 3.0, device: str = "cpu", rows: int | None = None,
           on_rows=None) -> np.ndarray:
    """AQE of every row of ``features`` (one set: queries and gallery stacked).

    Returns a new N x D array of the features' dtype (float64 stays float64, anything else float32).
    The k nearest items come from re-ranking's k-NN pass (rerank._knn_pass: square ``rows`` x ``rows`` blocks
    of the symmetric similarity matrix, on and above the diagonal, each row keeping its k nearest by cosine
    distance, equal distances by the lower index); the result does not depend on ``rows``. ``on_rows(n)``:
    progress.
    """
    import torch

    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.rerank import _knn_pass

    x = np.ascontiguousarray(features)
    x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    out = np.empty(x.shape, x.dtype)
    if len(x) == 0:
        return out
    k = min(int(k), len(x))
    computer = DistanceComputer(x, "cosine", device)  # holds the L2-normalised features, on the device
    knn = _knn_pass(computer, x, k, rows, on_rows)[0]
    raw = torch.as_tensor(x).to(computer.device)
    unit = computer.gallery
    step = max(1, (1 << 22) // max(1, k * x.shape[1]))  # rows whose k neighbours' features are gathered at once
    with torch.no_grad():
        for start in range(0, len(x), step):
            idx = torch.as_tensor(knn[start : start + step], device=computer.device)
            sims = torch.einsum("bd,bkd->bk", unit[start : start + len(idx)], unit[idx])
            weights = torch.pow(sims, float(alpha))
            if bool(torch.isnan(weights).any()):
                raise ReidkitError(f"query expansion: a neighbour's similarity is negative and alpha={alpha} is not an integer "
                                   "(give an integer alpha or a smaller k)")
            out[start : start + len(idx)] = (torch.einsum("bk,bkd->bd", weights, raw[idx]) / k).cpu().numpy()
    return out


def aqe(query_features, gallery_features, k: int = 5, alpha: float = 3.0, device: str = "cpu", rows: int | None = None):
    """fast-reid's ``aqe(query_feat, gallery_feat, qe_times=1, qe_k=k, alpha)``: (expanded queries, expanded gallery)."""
    q = np.asarray(query_features)
    both = expand(np.concatenate([q, np.asarray(gallery_features)], axis=0), k, alpha, device, rows)
    return both[: len(q)], both[len(q) :]


def check_protocol(protocol):
    """AQE is applied to the protocol's images before evaluation: tracklet units and single-shot galleries are refused."""
    if protocol.unit != "image":
        raise ReidkitError(f"--aqe expands image features; protocol '{protocol.name}' evaluates {protocol.unit}s (not supported)")
    if protocol.gallery_sampling != "all":
        raise ReidkitError(f"--aqe needs the whole gallery; protocol '{protocol.name}' samples it ({protocol.gallery_sampling})")


def protocol_images(store, protocol) -> np.ndarray:
    """Store indices of the protocol's query and gallery images (junk left out, camera subsets applied), each once."""
    from reidkit.evaluation.protocols import _split_images

    return np.unique(np.concatenate([_split_images(store, protocol.query, protocol.query_cameras, "query", protocol),
                                     _split_images(store, protocol.gallery, protocol.gallery_cameras, "gallery", protocol)]))


def expand_protocol(store, protocol, features, row_of, settings, device="cpu", cache=None, on_rows=None):
    """(features, row_of) holding the AQE-expanded features of the protocol's images, for ``evaluate_protocol``.

    The set expanded is the protocol's query and gallery images (as fast-reid's query + gallery); ``cache``
    (a dict) keeps the result for protocols with the same images.
    """
    check_protocol(protocol)
    images = protocol_images(store, protocol)
    key = (images.tobytes(), settings["k"], settings["alpha"])
    if cache is not None and key in cache:
        return cache[key]
    expanded = expand(features[row_of[images]], settings["k"], settings["alpha"], device, on_rows=on_rows)
    rows = np.full(len(row_of), -1, np.int64)
    rows[images] = np.arange(len(images))
    if cache is not None:
        cache[key] = (expanded, rows)
    return expanded, rows
