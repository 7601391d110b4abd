"""Re-ID evaluation: distances, CMC / mAP / mINP under the store's protocols, k-reciprocal re-ranking.

Public API:
- evaluate_store(store, features, index, protocols=None, distance="cosine", rerank=None, device="cpu", seed=0)
- evaluate_scores(dist, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None, rule="standard", max_rank=50)
- evaluate_chunks(chunks, ...): the same from an iterable of (first row, distance block), memory-bounded
- pairwise_distance / distance_chunks; rerank.k_reciprocal(q_feats, g_feats, k1=20, k2=6, lambda_=0.3)
"""
from reidkit.evaluation.distance import distance_chunks, pairwise_distance
from reidkit.evaluation.features import load_features, save_features
from reidkit.evaluation.protocols import evaluate_store, select_protocols
from reidkit.evaluation.ranking import evaluate_chunks, evaluate_scores

__all__ = ["evaluate_store", "evaluate_scores", "evaluate_chunks", "pairwise_distance", "distance_chunks",
           "load_features", "save_features", "select_protocols"]
