"""The page's figures as PNG bytes (matplotlib, Agg backend), so the page needs nothing but itself."""
from __future__ import annotations


def _png(fig) -> bytes:
    from reidkit.evaluation.plots import figure_png

    return figure_png(fig)


def _axes(title: str, width=6.4, height=3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(width, height), dpi=100, layout="constrained")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig, ax


def curves_png(series: dict[str, tuple[list, list]], title: str, ylabel: str, percent=False) -> bytes | None:
    """One line per entry (label -> (epochs, values)); None when there is nothing to draw."""
    drawn = {k: v for k, v in series.items() if any(y is not None for y in v[1])}
    if not drawn:
        return None
    fig, ax = _axes(title)
    for label, (xs, ys) in drawn.items():
        points = [(x, 100 * y if percent else y) for x, y in zip(xs, ys) if y is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None, ms=3, label=label)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def cmc_png(results: dict, title: str) -> bytes | None:
    """CMC curves (one per entry of ``results``: name -> metrics with 'cmc'), drawn as 'reidkit eval --plot' draws them."""
    from reidkit.evaluation.plots import cmc_figure

    results = {k: r for k, r in results.items() if r.get("cmc")}
    return _png(cmc_figure(results, title)) if results else None


def image_png(rgb) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return data.tobytes()
