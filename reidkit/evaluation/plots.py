"""CMC curves as a PNG (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path


def write_cmc_plot(results: dict, path, title: str = "CMC") -> Path:
    """One curve per protocol (rank 1..len(cmc)); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reidkit.store.atomic import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        for name, r in results.items():
            ranks = range(1, len(r["cmc"]) + 1)
            ax.plot(ranks, [100 * c for c in r["cmc"]], label=f"{name} (R1 {100 * r['rank1']:.1f}, mAP {100 * r['mAP']:.1f})")
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
        with atomic_output(path, replace=True) as partial:
            fig.savefig(partial, format="png")
    finally:
        plt.close(fig)
    return path
