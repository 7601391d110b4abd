"""CMC curves as a PNG (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import textwrap
from pathlib import Path

Y_TOP = 104  # headroom above 100%: a curve at 100% stays visible instead of merging with the frame


def cmc_figure(results: dict, title: str = "CMC"):
    """The matplotlib figure of ``write_cmc_plot``: one curve per entry, the legend below the axes (it hides no curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = max(1, len(results))
    fig, ax = plt.subplots(figsize=(6.4, 4.2 + 0.22 * n), dpi=100, layout="constrained")
    for name, r in results.items():
        ranks = range(1, len(r["cmc"]) + 1)
        ax.plot(ranks, [100 * c for c in r["cmc"]], label=f"{name} (R1 {100 * r['rank1']:.1f}, mAP {100 * r['mAP']:.1f})")
    ax.set_xlabel("rank")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, Y_TOP)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(title, 70)) or "CMC", fontsize=10)
    if results:
        fig.legend(loc="outside lower center", fontsize=8, ncols=1, frameon=False)
    return fig


def write_cmc_plot(results: dict, path, title: str = "CMC") -> Path:
    """One curve per protocol or model (rank 1..len(cmc)); written atomically."""
    from reidkit.store.atomic import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = cmc_figure(results, title)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    try:
        with atomic_output(path, replace=True) as partial:
            fig.savefig(partial, format="png")
    finally:
        plt.close(fig)
    return path


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, the figure closed (the report's and the audit's figures)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
