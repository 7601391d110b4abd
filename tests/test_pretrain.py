"""Pre-training store (namespaced identities, leakage guard), the pretrain strategy's export, and --init-from."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reidkit import open_store
from tests.helpers import make_world, run_cli

TRAIN = ("--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "32", "--width", "16",
         "--steps-per-epoch", "1", "--num-workers", "0", "--device", "cpu")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Two small worlds (other seeds: other datasets' fingerprints, same person ids), each with a train run and a query run."""
    root = tmp_path_factory.mktemp("worlds")
    out = []
    for seed in (0, 1):
        w = make_world(root / f"w{seed}.h5", ids=4, outfits=2, cameras=2, shots=1, seed=seed, extra=("--height", 32, "--width", 16))
        assert run_cli("expand", w, "--variants", 2, "--name", "gen", "--filter", "sanity").exit_code == 0
        assert run_cli("expand", w, "--variants", 1, "--split", "query", "--name", "leaky").exit_code == 0
        out.append(w)
    return out


def test_two_sources_never_merge_identities(worlds, tmp_path):
    out = tmp_path / "pre.h5"
    # '--run gen' given once per source, as people write it, names the run once (each image taken once)
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "gen", "--source", worlds[1], "--run", "gen", "--out", out)
    assert r.exit_code == 0, r.output
    pre = open_store(out)
    sources = [open_store(w) for w in worlds]
    runs = [s.runs()["gen"] for s in sources]
    assert len(pre) == sum(int(run.kept().sum()) for run in runs)
    assert json.loads(pre.attrs["sources"]) == [f"synthetic@{s.fingerprint}" for s in sources]
    assert sorted(set(pre.source.tolist())) == [0, 1]
    per_source = [set(np.unique(run.column("pid")).tolist()) for run in runs]
    assert per_source[0] & per_source[1]  # both worlds have a person with the same id ...
    assert len(np.unique(pre.pid)) == len(per_source[0]) + len(per_source[1])  # ... yet no identity merges
    assert len(np.unique(pre.label[pre.split("train")])) == len(np.unique(pre.pid))
    table = pre.settings["identities"]
    for i in range(len(pre)):  # every image's identity maps back to its source and source person id
        new, name, old = table[int(pre.pid[i])]
        src = pre.columns["path"][i].split("/")[1].split("-")[0]  # "<run>/<source index>-<variant>"
        assert new == int(pre.pid[i]) and name == json.loads(pre.attrs["sources"])[int(pre.source[i])]
        assert old == int(sources[int(pre.source[i])].pid[int(src)])
    # the stored images are the runs' kept images, byte for byte
    assert pre.image_bytes(0) == runs[0].image_bytes(int(np.flatnonzero(runs[0].kept())[0]))


def test_leakage_guard_refuses_test_identities_unless_allowed(worlds, tmp_path):
    out = tmp_path / "pre.h5"
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "leaky", "--out", out)
    assert r.exit_code == 1 and "leakage guard" in r.output and "query/gallery" in r.output
    assert not out.exists()  # nothing half-written
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "leaky", "--out", out, "--allow-overlap")
    assert r.exit_code == 0 and "WARNING" in r.output
    leak = open_store(out).settings["leakage"]
    assert leak["allowed"] is True
    (per_eval_store,) = leak["overlap"].values()  # one source ...
    (overlap,) = per_eval_store.values()  # ... overlapping its own store's query/gallery
    w = open_store(worlds[0])
    assert overlap and set(overlap) <= set(w.pid[w.split("query")].tolist())
    assert next(iter(leak["non_train_sources"].values())) > 0


def test_eval_store_of_same_dataset_is_checked(worlds, tmp_path):
    # a train run whose identities are not evaluated anywhere passes, also with the same store named as eval store
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "gen", "--eval-store", worlds[0], "--out", tmp_path / "ok.h5")
    assert r.exit_code == 0, r.output
    assert open_store(tmp_path / "ok.h5").settings["leakage"]["overlap"] == {}
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "missing", "--out", tmp_path / "x.h5")
    assert r.exit_code == 1 and "no run missing" in r.output


def test_pretrain_export_and_init_from_round_trip(worlds, tmp_path):
    from safetensors.torch import load_file

    pre = tmp_path / "pre.h5"
    assert run_cli("pretrain-store", "--source", worlds[0], "--source", worlds[1], "--run", "gen", "--out", pre).exit_code == 0
    r = run_cli("train", pre, "--plugin", "pretrain", "--epochs", "1", "--out", tmp_path / "p", *TRAIN)
    assert r.exit_code == 0, r.output
    exported = load_file(str(tmp_path / "p" / "backbone.safetensors"))
    model = load_file(str(tmp_path / "p" / "model.safetensors"))
    assert exported.keys() == {k[len("backbone."):] for k in model if k.startswith("backbone.")}  # no classifier
    assert all(np.array_equal(exported[k].numpy(), model["backbone." + k].numpy()) for k in exported)
    import yaml

    info = yaml.safe_load((tmp_path / "p" / "backbone.yaml").read_text())
    assert info["backbone"]["model"] == "resnet18" and info["strategy"] == "pretrain"

    # fine-tune another store from the export with lr 0: the trunk's weights must be the export's
    r = run_cli("train", worlds[0], "--plugin", "baseline", "--init-from", tmp_path / "p", "--lr", "0", "--epochs", "1",
                "--out", tmp_path / "ft", *[a for a in TRAIN if a not in ("resnet18",) and a != "--backbone"])
    assert r.exit_code == 0, r.output
    tuned = load_file(str(tmp_path / "ft" / "model.safetensors"))
    conv = [k for k in exported if k.endswith("conv1.weight")]
    assert conv and all(np.array_equal(exported[k].numpy(), tuned["backbone." + k].numpy()) for k in conv)
    # random init differs from it
    r = run_cli("train", worlds[0], "--plugin", "baseline", "--lr", "0", "--epochs", "1", "--out", tmp_path / "rand", *TRAIN)
    rand = load_file(str(tmp_path / "rand" / "model.safetensors"))
    assert not np.array_equal(rand["backbone." + conv[0]].numpy(), exported[conv[0]].numpy())


def test_init_from_wrong_backbone_or_path_is_one_line(worlds, tmp_path):
    pre = tmp_path / "pre.h5"
    assert run_cli("pretrain-store", "--source", worlds[0], "--run", "gen", "--out", pre).exit_code == 0
    assert run_cli("train", pre, "--plugin", "pretrain", "--epochs", "1", "--out", tmp_path / "p", *TRAIN).exit_code == 0
    args = [a for a in TRAIN if a not in ("resnet18", "--backbone")]
    r = run_cli("train", worlds[0], "--init-from", tmp_path / "p", "--backbone", "resnet34", "--epochs", "1", "--out", tmp_path / "x", *args)
    assert r.exit_code == 1 and "does not fit this backbone" in r.output
    r = run_cli("train", worlds[0], "--init-from", tmp_path / "nothing", "--epochs", "1", "--out", tmp_path / "y", *args)
    assert r.exit_code == 1 and "no backbone.safetensors" in r.output


def test_with_real_adds_the_sources_own_training_images(worlds, tmp_path):
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "gen", "--with-real", "--out", tmp_path / "pre.h5")
    assert r.exit_code == 0, r.output
    pre, w = open_store(tmp_path / "pre.h5"), open_store(worlds[0])
    real = [i for i in range(len(pre)) if pre.columns["path"][i].startswith("real/")]
    assert len(real) == len(w.split("train"))  # every training image of the generated identities
    assert len(np.unique(pre.pid)) == len(np.unique(w.pid[w.split("train")]))  # real and generated share ids


def test_eval_store_guard_across_stores(worlds, tmp_path):
    import shutil

    from reidkit.pretrain_store import same_population

    # the same people adapted into another file (e.g. other protocol settings): its query/gallery ids count
    twin = tmp_path / "twin.h5"
    shutil.copy(worlds[0], twin)
    a, b, c = open_store(worlds[0]), open_store(twin), open_store(worlds[1])
    assert same_population(a, b) and not same_population(a, c)  # another seed: other people
    r = run_cli("pretrain-store", "--source", worlds[0], "--run", "leaky", "--eval-store", twin, "--allow-overlap", "--out", tmp_path / "p.h5")
    assert r.exit_code == 0
    (overlap,) = open_store(tmp_path / "p.h5").settings["leakage"]["overlap"].values()
    assert len(overlap) == 1  # both stores have one fingerprint: recorded once
    r = run_cli("pretrain-store", "--source", worlds[1], "--run", "gen", "--eval-store", worlds[0], "--out", tmp_path / "q.h5")
    assert r.exit_code == 0, r.output  # another world's people never collide with world 0's test ids


def test_json_reports_each_source(worlds, tmp_path):
    out = tmp_path / "pre.h5"
    r = run_cli("pretrain-store", "--source", worlds[0], "--source", worlds[1], "--run", "gen", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    pre = open_store(out)
    assert data["path"] == str(out) and data["images"] == len(pre) and data["fingerprint"] == pre.fingerprint
    assert [s["images"] for s in data["sources"]] == [int(open_store(w).runs()["gen"].kept().sum()) for w in worlds]
    assert all(s["runs"] == ["gen"] and s["overlap"] == {} for s in data["sources"])
