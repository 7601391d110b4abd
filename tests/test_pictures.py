"""Pictures: labelled contact sheets (show and the demo share one renderer), wrapped captions, readable CMC plots."""
from pathlib import Path

import cv2
import numpy as np
import pytest

import reidkit
from reidkit.evaluation import plots
from reidkit.evaluation.plots import cmc_figure, write_cmc_plot
from reidkit.generation import run_expand
from reidkit.store.preview import LINE_HEIGHT, TEXT_MARGIN, labelled_tile, sheet_layout, text_width, wrap_text
from tests.helpers import make_world, run_cli

LONG = ("a faded olive green waterproof hooded parka with reflective stripes over a striped woollen jumper, "
        "charcoal pinstriped tailored trousers rolled at the ankle and scuffed burgundy leather hiking boots")


def ink(region) -> int:
    """Dark (text) pixels in an RGB or BGR region of a white-background sheet."""
    return int((np.asarray(region).max(axis=-1) < 128).sum())


def solid(colour, h=40, w=20):
    return np.full((h, w, 3), colour, np.uint8)


# --- wrapping ---------------------------------------------------------------------------------------------------

def test_wrap_keeps_every_word_in_order_within_the_width():
    lines = wrap_text(LONG, 76)
    assert len(lines) > 5  # the old sheet cut captions after five lines
    assert " ".join(lines).split() == LONG.split()
    assert all(text_width(line) <= 76 for line in lines)
    # greedy: the next line's first word would not have fitted on the line before
    for a, b in zip(lines, lines[1:]):
        assert text_width(f"{a} {b.split()[0]}") > 76


def test_wrap_splits_a_word_wider_than_the_line_and_keeps_newlines():
    word = "supercalifragilisticexpialidocious"
    lines = wrap_text(f"{word} end", 40)
    assert "".join(lines[:-1]) + lines[-1].split()[0] == word and lines[-1].endswith("end")
    assert all(text_width(line) <= 40 for line in lines)
    assert wrap_text("pid 3\n#17", 76) == ["pid 3", "#17"]
    assert wrap_text("", 76) == [] and wrap_text("short", 76) == ["short"]


def test_long_caption_grows_its_band_and_every_line_is_drawn():
    short = [[{"image": solid(200), "caption": "red shirt"}]]
    long_ = [[{"image": solid(200), "caption": LONG}]]
    a, b = sheet_layout(short, height=160, width=80), sheet_layout(long_, height=160, width=80)
    assert len(b["captions"][0][0]) > len(a["captions"][0][0]) == 1
    assert b["bands"][0] > a["bands"][0] and b["bands"][0] >= LINE_HEIGHT * len(b["captions"][0][0])
    sheet = labelled_tile(long_, height=160, width=80)
    assert sheet.shape[0] == b["size"][0] == 2 + 160 + b["bands"][0] + 2
    top = b["row_tops"][0] + 160 + TEXT_MARGIN
    for k in range(len(b["captions"][0][0])):  # text on every line, the last one included: nothing cut off
        assert ink(sheet[top + k * LINE_HEIGHT : top + (k + 1) * LINE_HEIGHT]) > 5, k
    assert ink(sheet[top + len(b["captions"][0][0]) * LINE_HEIGHT :]) == 0


def test_headers_above_each_column_and_empty_cells():
    cells = [[{"image": solid(90)}, None, {"image": solid(90), "frame": (220, 0, 0)}]]
    sheet = labelled_tile(cells, columns=["original", "variant 1", "variant 2"], height=60, width=40)
    layout = sheet_layout(cells, ["original", "variant 1", "variant 2"], height=60, width=40)
    header, top = layout["header_height"], layout["row_tops"][0]
    assert header > 0 and top == 2 + header + 2
    for c in range(3):
        x = 2 + c * 42
        assert ink(sheet[2 : 2 + header, x : x + 40]) > 5, c  # its label
        assert (sheet[top : top + 60, x : x + 40] == 255).all() == (c == 1)  # the None cell stays blank
    assert tuple(sheet[top, 2 + 2 * 42 + 20]) == (220, 0, 0)  # the frame


# --- contact sheets: reidkit show and the demo --------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = make_world(tmp_path_factory.mktemp("pics") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    run_expand(path, variants=3, name="r", show_progress=False)
    return reidkit.open_store(path)


def check_labelled_sheet(png: Path, columns: int, rows: int):
    """Header text above every column, image cells below it, a caption under each row's first image."""
    sheet = cv2.imread(str(png))
    assert sheet.shape[1] == 2 + columns * 82
    filled = (sheet[:, 2:82] < 250).any(axis=-1).sum(axis=1)  # non-white pixels per pixel row of the first column
    first_image = int(np.argmax(filled >= 78))  # text never fills a row; an image does
    assert first_image > LINE_HEIGHT  # a header band, not an image at the top
    for c in range(columns):
        x = 2 + c * 82
        assert ink(sheet[2:first_image, x : x + 80]) > 10, f"no header over column {c}"
    # under the first image: the row's caption (source image, person, camera)
    assert ink(sheet[first_image + 160 : first_image + 160 + 2 * LINE_HEIGHT, 2:82]) > 20
    assert sheet.shape[0] > first_image + rows * 160
    return sheet


def test_demo_contact_sheet_labels_columns_and_rows_as_show_does(store, tmp_path):
    from reidkit.demo import contact_sheet

    run = store.run("r")
    path = contact_sheet(store, run, tmp_path / "demo.png", rows=2, seed=0)
    check_labelled_sheet(path, columns=4, rows=2)  # original + 3 variants
    # the same renderer as 'reidkit show' (no masks): the same picture for the same originals
    sources = sorted(int(s) for s in np.random.default_rng(0).choice(np.unique(run.source_index()[run.kept()]), 2, replace=False))
    from reidkit.generation.contact_sheet import gather, render_sheet

    want = render_sheet(gather(store, run, sources, with_masks=False))
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), want)


def test_show_sheet_headers_and_full_prompts(store, tmp_path):
    out = tmp_path / "s.png"
    assert run_cli("show", store.path, "--run", "r", "--out", out, "--sources", 2, "--masks").exit_code == 0
    check_labelled_sheet(out, columns=5, rows=2)  # original, mask, 3 variants
    from reidkit.generation.contact_sheet import choose_sources, gather, sheet_cells

    run = store.run("r")
    cells, columns = sheet_cells(gather(store, run, choose_sources(run, 2, 0), True))
    assert columns == ["original", "mask", "variant 1", "variant 2", "variant 3"]
    layout = sheet_layout(cells, columns, height=160, width=80)
    for row, lines in zip(cells, layout["captions"]):
        for cell, cell_lines in zip(row, lines):
            assert " ".join(cell_lines).split() == cell["caption"].split()  # whole prompts, wrapped


# --- CMC plots ----------------------------------------------------------------------------------------------------

def curves(n=4, ranks=20):
    out = {}
    for k, r1 in enumerate(np.linspace(0.5, 1.0, n)):
        cmc = np.minimum(1.0, np.linspace(r1, 1.2, ranks)).tolist()  # the best model sits at 100% from rank 1
        out[f"model {k} + expansion + refinement"] = {"cmc": cmc, "rank1": cmc[0], "mAP": 0.6 * r1}
    return out


def test_cmc_plot_headroom_legend_outside_and_title():
    import matplotlib.pyplot as plt

    fig = cmc_figure(curves(), title="checkpoint cal-s0 on prcc: cosine")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        assert ax.get_ylim()[1] > 100 and max(ax.get_yticks()) <= 100
        # a curve at 100% is drawn below the top of the axes, not on its frame
        top_curve = max(max(line.get_ydata()) for line in ax.get_lines())
        assert top_curve == 100 and ax.transData.transform((1, 100))[1] < ax.get_window_extent(renderer).y1 - 3
        legends = fig.legends + ([ax.get_legend()] if ax.get_legend() else [])
        assert len(legends) == 1 and len(legends[0].get_texts()) == 4
        assert not legends[0].get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        assert fig.bbox.contains(*legends[0].get_window_extent(renderer).min) and \
            fig.bbox.contains(*legends[0].get_window_extent(renderer).max)  # and inside the picture
        assert "cal-s0" in ax.get_title()
    finally:
        plt.close(fig)


def test_write_cmc_plot_png(tmp_path):
    path = write_cmc_plot(curves(2), tmp_path / "cmc.png", title="t")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 400 and ink(image) > 1000


@pytest.fixture(scope="module")
def eval_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalplot")
    path = root / "world.h5"
    assert run_cli("adapt", "synthetic", "--out", path, "--ids", 6, "--height", 32, "--width", 16).exit_code == 0
    return reidkit.open_store(path), root


def titles_of(monkeypatch) -> list[str]:
    seen = []
    real = plots.cmc_figure

    def spy(results, title="CMC"):
        fig = real(results, title)
        seen.append(fig.axes[0].get_title())
        return fig

    monkeypatch.setattr(plots, "cmc_figure", spy)
    return seen


def test_eval_plot_title_names_the_checkpoint(eval_world, monkeypatch):
    from reidkit.training.engine import train
    from tests.train_helpers import tiny_config

    store, root = eval_world
    run_dir = root / "runs" / "cal-seed-3"
    train(store.path, tiny_config("baseline"), run_dir, progress=False, max_steps=1)  # a real (tiny) trained run
    seen = titles_of(monkeypatch)
    result = run_cli("eval", store.path, "--checkpoint", run_dir, "--plot", root / "c.png", "--json")
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and "cal-seed-3" in seen[0] and store.dataset in seen[0]
    assert cv2.imread(str(root / "c.png")) is not None
