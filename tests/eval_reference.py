"""A deliberately plain per-query reference for CMC, AP and INP, written from shared/datasets.md.

Loops over queries and gallery items; no vectorisation, no shared code with
reidkit.evaluation. Tie rule (the same as reidkit's, see docs/eval.md): valid
items are ordered by distance, a negative at the same distance as a positive
comes first.
"""


def reference_metrics(dist, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None, rule="standard", max_rank=50):
    cmc_hits = [0] * max_rank
    aps, inps = [], []
    for i in range(len(q_pids)):
        items = []  # (distance, is_positive)
        for j in range(len(g_pids)):
            if g_pids[j] == q_pids[i]:
                if g_cams[j] == q_cams[i]:
                    continue  # same person, same camera: dropped
                if rule == "cc" and g_clothes[j] == q_clothes[i]:
                    continue  # same person, same clothes: dropped for clothes-changing
                if rule == "sc" and g_clothes[j] != q_clothes[i]:
                    continue  # same person, other clothes: dropped for same-clothes
                items.append((float(dist[i][j]), 1))
            else:
                items.append((float(dist[i][j]), 0))
        # negatives (0) before positives (1) at equal distance
        items.sort(key=lambda t: (t[0], t[1]))
        ranks = [r + 1 for r, (_, pos) in enumerate(items) if pos]
        if not ranks:
            continue  # no positive: query skipped
        for k in range(ranks[0] - 1, max_rank):
            cmc_hits[k] += 1
        aps.append(sum((n + 1) / r for n, r in enumerate(ranks)) / len(ranks))
        inps.append(len(ranks) / ranks[-1])
    n = len(aps)
    cmc = [h / n if n else 0.0 for h in cmc_hits]
    return {
        "rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9],
        "mAP": sum(aps) / n if n else 0.0, "mINP": sum(inps) / n if n else 0.0,
        "valid_queries": n, "cmc": cmc,
    }
