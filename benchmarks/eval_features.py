"""Benchmark features for evaluation: random vectors, or clustered like a trained Re-ID model's.

Two kinds, at a dataset's scale (queries, gallery, identities, cameras, distractors):

- ``random``: i.i.d. standard normal vectors (default 2048-d). Every distance is
  close to every other; the positives of a query are spread over the whole ranking.
- ``clustered``: what a trained model's features look like. Each person is a tight
  cluster around its own unit-norm centre; each (person, camera) pair adds its own
  unit-norm "view" direction times ``view`` (the same person looks different in
  another camera); each image adds isotropic noise of norm about ``tightness``
  (times a per-image factor exp(0.25 N(0, 1)), so a few images are hard).
  Distractors are persons of their own. Settings: ``dim`` (default 256: a few
  hundred dimensions, as a trained embedding), ``tightness`` (default 1.3; smaller
  = tighter clusters = easier) and ``view`` (default 1.0). With the defaults at
  MSMT17 scale, cosine distance gives rank-1 0.98, mAP 0.74, mINP 0.12: positives
  sit near the top of the ranking, and most of the gallery lies far beyond the
  farthest positive (the opposite of random features).

    from eval_features import make_data
    q, g, q_pids, g_pids, q_cams, g_cams = make_data("msmt", "clustered", dim=256, tightness=1.3)
"""
from __future__ import annotations

import numpy as np

SCALES = {  # queries, gallery, identities, cameras, distractors in the gallery
    "market": (3368, 15913, 750, 6, 2793),
    "msmt": (11659, 82161, 3060, 15, 0),  # MSMT17's test split: 3,060 of its 4,101 identities
    # MSMT17 reduced (same persons / cameras ratios): to choose methods before a full-scale run
    "msmt-half": (5830, 41080, 1530, 15, 0),
    "msmt-quarter": (2915, 20540, 765, 15, 0),
}
KINDS = ("random", "clustered")
DEFAULT_DIM = {"random": 2048, "clustered": 256}


def make_data(scale: str, kind: str = "random", dim: int | None = None, seed: int = 0, tightness: float = 1.3,
              view: float = 1.0):
    """(q, g, q_pids, g_pids, q_cams, g_cams): float32 features and int labels (pid 0 = distractor)."""
    nq, ng, ids, cams, distractors = SCALES[scale]
    dim = dim or DEFAULT_DIM[kind]
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, ids + 1, ng - distractors), np.zeros(distractors, np.int64)])
    q_cams, g_cams = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    if kind == "random":
        return (rng.standard_normal((nq, dim), dtype=np.float32), rng.standard_normal((ng, dim), dtype=np.float32),
                q_pids, g_pids, q_cams, g_cams)
    if kind != "clustered":
        raise ValueError(f"unknown feature kind {kind!r} (expected one of {KINDS})")
    # a distractor is its own person: give each one a cluster id of its own
    g_cluster = np.where(g_pids > 0, g_pids, ids + 1 + np.arange(ng))
    n_clusters = ids + 1 + ng if distractors else ids + 1
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    centres = unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))
    view_seed = int(rng.integers(2**31))

    def draw(cluster, cam):
        # the (person, camera) view direction is drawn from its own seed: no (persons x cameras x dim) table
        views = np.stack([unit(np.random.default_rng([view_seed, int(c), int(k)]).standard_normal(dim, dtype=np.float32))
                          for c, k in zip(cluster, cam)]) if len(cluster) else np.zeros((0, dim), np.float32)
        scale_i = (tightness * np.exp(0.25 * rng.standard_normal(len(cluster)))).astype(np.float32) / np.sqrt(dim)
        noise = rng.standard_normal((len(cluster), dim), dtype=np.float32) * scale_i[:, None]
        return (centres[cluster] + view * views + noise).astype(np.float32)

    return draw(q_pids, q_cams), draw(g_cluster, g_cams), q_pids, g_pids, q_cams, g_cams
