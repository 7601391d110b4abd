"""``reidkit export --format onnx``: onnxruntime gives the features 'reidkit eval' extracts, at any batch size."""
import numpy as np
import pytest

from tests.helpers import make_world, run_cli

pytest.importorskip("onnxruntime", reason="the onnx extra is part of the test install (pip install .[test])")


def _torch_exports():
    import torch

    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 14)


# torch 2.6 (the floors, constraints-floors.txt) fails to convert BatchNorm with onnxscript 0.7, the oldest onnxscript
# its exporter meets in a consistent install; export is tested with the pinned torch 2.14 (docs/export.md)
pytestmark = pytest.mark.skipif(not _torch_exports(), reason="ONNX export is tested with torch >= 2.14 (constraints.txt)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    store = make_world(d / "w.h5", ids=4, cameras=2, extra=("--height", "64", "--width", "32"))
    result = run_cli("train", store, "--out", d / "run", "--weights", "none", "--backbone", "resnet10t", "--height", "64",
                     "--width", "32", "--batch", "2,2", "--epochs", "1", "--device", "cpu", "--num-workers", "0")
    assert result.exit_code == 0, result.output
    return d, store


def _onnx_features(path, images):
    import onnxruntime

    from reidkit.training.data import normalise, resize

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.stack([normalise(resize(im, 64, 32)) for im in images])
    return session.run(["features"], {"images": batch})[0]


def test_onnx_features_equal_the_evaluation_features(trained):
    d, store = trained
    result = run_cli("export", "--checkpoint", d / "run")
    assert result.exit_code == 0, result.output
    assert "verified: onnxruntime's features equal PyTorch's" in result.output
    saved = d / "features.npz"
    assert run_cli("eval", store, "--checkpoint", d / "run", "--save-features", saved).exit_code == 0
    with np.load(saved) as f:
        expected, index = f["features"], f["index"]
    from reidkit import open_store

    opened = open_store(store)
    images = [opened.image(int(i)) for i in index[:5]]
    one_by_one = np.concatenate([_onnx_features(d / "run" / "model.onnx", [im]) for im in images])
    together = _onnx_features(d / "run" / "model.onnx", images)  # dynamic batch: 1 and 5 from the same file
    assert np.abs(one_by_one - expected[:5]).max() < 1e-4
    assert np.abs(together - expected[:5]).max() < 1e-4


def test_metadata_and_no_flip(trained, tmp_path):
    import onnx

    d, store = trained
    flat = tmp_path / "noflip.onnx"
    assert run_cli("export", "--checkpoint", d / "run", "--out", flat, "--no-flip").exit_code == 0
    meta = {p.key: p.value for p in onnx.load(str(flat)).metadata_props}
    assert meta["input"].startswith("images: N x 3 x 64 x 32") and meta["mean"] == "0.485,0.456,0.406"
    assert "mirrored" not in meta["output"] and meta["strategy"] == "baseline"
    from reidkit import open_store
    from reidkit.evaluation.inference import load_reid_model

    image = open_store(store).image(0)
    runner = load_reid_model(d / "run")
    got = _onnx_features(flat, [image])
    assert np.abs(got - runner.features([image], flip=False)).max() < 1e-4
    assert np.abs(got - runner.features([image], flip=True)).max() > 1e-4  # the flag changes the graph


def test_json(trained, tmp_path):
    import json

    d, _ = trained
    result = run_cli("export", "--checkpoint", d / "run", "--out", tmp_path / "m.onnx", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["path"] == str(tmp_path / "m.onnx") and data["flip"] is False and data["opset"] == 18  # a baseline run: its test_flip
    assert 0 <= data["verified_max_difference"] < 1e-4 and data["metadata"]["backbone"] == "resnet10t"


def test_bad_checkpoint_is_one_line(tmp_path):
    result = run_cli("export", "--checkpoint", tmp_path)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "model.onnx").exists()
