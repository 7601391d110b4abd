"""Filters: sanity (blank / NaN / unchanged) and reid-confidence with a tiny timm classifier trained here."""
import json
import shutil

import numpy as np
import pytest

import reidkit
from reidkit.generation import run_expand
from reidkit.generation.contracts import GenerationItem
from reidkit.plugins.filters.sanity import SanityFilter
from tests.helpers import make_world, run_console


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("fw") / "w.h5", ids=6, outfits=2, cameras=2, shots=1)


def _item(img, mask):
    return GenerationItem(0, 0, img, mask, None, [], [], "k", ["x"], "x", 0)


def test_sanity_rejects_blank_nan_and_unchanged():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)
    mask = np.zeros((32, 16), bool)
    mask[8:24] = True
    changed = src.copy()
    changed[mask] = 255 - changed[mask]
    blank = np.full_like(src, 7)
    f = SanityFilter(SanityFilter.defaults, "cpu", None)
    v = f.judge([_item(src, mask)] * 4, [changed, blank, src.copy(), changed], [False, False, False, True])
    assert [x.kept for x in v] == [True, False, False, False]
    assert [x.reason for x in v] == ["", "blank", "unchanged", "nan"]
    assert v[0].scores["change"] > 50 and v[2].scores["change"] == 0


class TinyReid:
    """A timm classifier trained for a few steps on the store's training images: the filter's model interface."""

    def __init__(self, store, steps=25, seed=0):
        import timm
        import torch

        torch.manual_seed(seed)
        idx = store.split("train")
        pids = sorted(set(store.pid[idx].tolist()))
        self.label_of_pid = {p: i for i, p in enumerate(pids)}
        self.net = timm.create_model("test_convnext", pretrained=False, num_classes=len(pids))
        x = self._batch([store.image(i) for i in idx])
        y = torch.tensor([self.label_of_pid[int(p)] for p in store.pid[idx]])
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3)
        self.net.train()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(self.net(x), y).backward()
            opt.step()
        self.net.eval()

    @staticmethod
    def _batch(images):
        import torch

        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return torch.nn.functional.interpolate(x, size=(64, 32), mode="bilinear", align_corners=False)

    def identity_probs(self, images):
        import torch

        with torch.inference_mode():
            return torch.softmax(self.net(self._batch(images)), 1).numpy()

    def features(self, images):
        import torch

        with torch.inference_mode():
            return self.net.forward_head(self.net.forward_features(self._batch(images)), pre_logits=True).numpy()


@pytest.fixture(scope="module")
def tiny_reid(world):
    return TinyReid(reidkit.open_store(world))


def test_reid_confidence_keeps_at_or_above_tau_and_records_everything(world, tmp_path, tiny_reid):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    store = reidkit.open_store(store_path)
    # real training images score high for their own person: the model learned something
    own = tiny_reid.identity_probs([store.image(i) for i in store.split("train")])
    labels = [tiny_reid.label_of_pid[int(p)] for p in store.pid[store.split("train")]]
    assert np.mean(own[np.arange(len(labels)), labels]) > 0.5
    run_expand(store_path, variants=3, name="probe", filters=["reid-confidence:tau=0.0"], show_progress=False,
                       filter_objects={"reid-confidence": {"model": tiny_reid}})
    ps = np.array([json.loads(s)["reid-confidence.p"] for s in store.run("probe").column("scores")])
    tau = float(np.median(ps))  # a threshold that splits this run, so both branches are exercised
    summary = run_expand(store_path, variants=3, name="f", filters=["sanity", f"reid-confidence:tau={tau},report_taus=[0.0,{tau},1.01]"],
                         show_progress=False, filter_objects={"reid-confidence": {"model": tiny_reid}})
    run = reidkit.open_store(store_path).run("f")
    kept, reasons = run.kept(), run.column("reject_reason")
    scores = [json.loads(s) for s in run.column("scores")]
    p = np.array([s["reid-confidence.p"] for s in scores])
    assert len(run) == summary["generated"] == 3 * len(store.split("train"))  # rejected items stay recorded
    assert np.array_equal(kept, p >= tau) and 0 < kept.sum() < len(kept)
    assert all(r.startswith("reid-confidence: p(source id)") for r in reasons[~kept]) and all(r == "" for r in reasons[kept])
    assert all("sanity.change" in s and "reid-confidence.top1" in s for s in scores)
    # the cosine to the source person's real-feature centroid is recorded too, and is what it says
    first = 0
    src = int(run.source_index()[first])
    pid_rows = store.split("train")[store.pid[store.split("train")] == store.pid[src]][:32]
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)  # noqa: E731
    centroid = unit(unit(tiny_reid.features([store.image(i) for i in pid_rows])).mean(0, keepdims=True))[0]
    mine = float(unit(tiny_reid.features([run.image(first)]))[0] @ centroid)
    assert scores[first]["reid-confidence.centroid_cos"] == pytest.approx(mine, abs=1e-4)
    assert all(-1.0 <= s["reid-confidence.centroid_cos"] <= 1.0 for s in scores)
    assert summary["kept"] == int(kept.sum()) and summary["rejected"] == int((~kept).sum())
    rates = summary["pass_rates"]["reid-confidence"]
    assert rates["0.0"] == 1.0 and rates["1.01"] == 0.0 and rates[str(tau)] == pytest.approx(kept.mean())
    resumed = run_expand(store_path, variants=3, name="f", filters=["sanity", f"reid-confidence:tau={tau},report_taus=[0.0,{tau},1.01]"],
                         show_progress=False, filter_objects={"reid-confidence": {"model": tiny_reid}})
    assert resumed["generated"] == 0 and resumed["pass_rates"] == summary["pass_rates"]  # reported over the whole run
    assert run.info["settings"]["filters"][1] == {"name": "reid-confidence", "settings": {
        "checkpoint": "", "tau": tau, "report_taus": [0.0, tau, 1.01], "batch_size": 64, "centroid_images": 32}}


def test_reid_confidence_without_model_is_one_line(world, tmp_path):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    proc = run_console("expand", store_path, "--variants", "1", "--filter", "reid-confidence")
    assert proc.returncode == 1 and "needs a model" in proc.stderr and "Traceback" not in proc.stderr


def test_reid_confidence_from_a_reidkit_train_checkpoint(world, tmp_path):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    ckpt = tmp_path / "reid"
    trained = run_console("train", store_path, "--backbone", "resnet18", "--weights", "none", "--epochs", "1",
                          "--steps-per-epoch", "1", "--height", "64", "--width", "32", "--batch", "2,2", "--device", "cpu",
                          "--eval-every", "0", "--out", ckpt)
    assert trained.returncode == 0, trained.stderr[-1500:]
    proc = run_console("expand", store_path, "--variants", "1", "--limit", "3", "--name", "rc", "--json",
                       "--filter", f"reid-confidence:checkpoint={ckpt},tau=0.0,report_taus=[0.0,1.01]")
    assert proc.returncode == 0, proc.stderr[-1500:]
    summary = json.loads(proc.stdout)
    assert summary["kept"] == 3 and summary["pass_rates"]["reid-confidence"] == {"0.0": 1.0, "1.01": 0.0}
    run = reidkit.open_store(store_path).run("rc")
    ps = [json.loads(s)["reid-confidence.p"] for s in run.column("scores")]
    assert all(0.0 < p < 1.0 for p in ps)
    assert all(-1.0 <= json.loads(s)["reid-confidence.centroid_cos"] <= 1.0 for s in run.column("scores"))
