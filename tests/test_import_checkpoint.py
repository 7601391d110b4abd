"""``reidkit import-checkpoint``: CAL/DLCR, BoT, fast-reid and torchreid checkpoints become reidkit runs whose test
features equal the source model's.

Each source model is written here in this test's own words from torchvision modules, following its project's
forward (the files named in reidkit/importing/<format>.py): random weights, seeded, with BN running statistics
randomised too (a mix-up of weight/bias/mean/var shows). Each is saved in exactly its project's checkpoint format
(entries, nesting, a ``module.`` prefix in torchreid's DataParallel case), imported through the real command, and
read back with reidkit's own reader (load_reid_model). Inputs are 64x32 for speed (the imports are told --height
64 --width 32; the source's own sizes are checked in config.yaml separately).
"""
import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

torchvision = pytest.importorskip("torchvision", reason="torchvision comes with torch (constraints.txt)")

H, W = 64, 32
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PERSONS = 7


# ---------------------------------------------------------------------------------------------------- helpers --

def console(capsys, *args):
    """Run the console entry point in-process: (exit code, stdout, stderr)."""
    from reidkit.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def resnet50(last_stride):
    """torchvision's ResNet-50, random (seeded) weights; last stride 1 as BoT/CAL/fast-reid set it: layer4's first
    block strides in conv2 and in the downsample convolution."""
    net = torchvision.models.resnet50(weights=None)
    if last_stride == 1:
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    return net


def randomise_bn(module, seed):
    """Every BatchNorm's weight, bias and running statistics random (distinct ranges, so a swap shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
                m.running_mean.normal_(0.0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    return module


def trunk_forward(net, x, stem_relu=True):
    x = net.bn1(net.conv1(x))
    if stem_relu:
        x = net.relu(x)
    x = net.maxpool(x)
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def images(n=4, seed=0):
    """uint8 RGB images of another size than the model's input, so resizing is part of the comparison."""
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, (100 + 7 * i, 45 + 3 * i, 3), dtype=np.uint8) for i in range(n)]


def torchvision_preprocess(imgs, interpolation=None):
    """The sources' test transform: T.Resize((h, w)) on a PIL image, ToTensor, Normalize(ImageNet)."""
    from PIL import Image
    from torchvision import transforms as T

    resize = T.Resize((H, W)) if interpolation is None else T.Resize((H, W), interpolation=interpolation)
    tf = T.Compose([resize, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return torch.stack([tf(Image.fromarray(im)) for im in imgs])


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def close(a, b, tol=1e-5):
    """max |a - b| <= tol x max(1, max |b|): float32 rounding grows with the features' magnitude (random weights give
    features in the hundreds), so the bound is relative to it."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff, scale = np.abs(a - b).max(), max(1.0, np.abs(b).max())
    assert diff <= tol * scale, f"max difference {diff:.3g} at scale {scale:.3g}"
    return diff


# ------------------------------------------------- the four source models, each following its project's forward --

class CalSource(nn.Module):
    """Simple-CCReID models/img_resnet.py ResNet50 (RES4_STRIDE 1, POOLING maxavg, FEATURE_DIM 4096) and
    models/classifier.py Classifier; test.py: features of the image plus its mirror."""

    def __init__(self):
        super().__init__()
        self.base = nn.Sequential(*list(resnet50(1).children())[:-2])
        self.bn = nn.BatchNorm1d(4096)

    def forward(self, x):
        x = self.base(x)
        x = torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1)  # MaxAvgPooling
        return self.bn(x.view(x.size(0), -1))

    def test_features(self, x):
        return (self(x) + self(torch.flip(x, [3]))) / 2  # CAL sums then L2-normalises: the same direction


class CalClassifier(nn.Module):
    def __init__(self, dim, classes):
        super().__init__()
        self.classifier = nn.Linear(dim, classes)


class BotSource(nn.Module):
    """reid-strong-baseline modeling/baseline.py Baseline (resnet50, LAST_STRIDE 1, NECK bnneck, TEST.NECK_FEAT after)
    over modeling/backbones/resnet.py ResNet, whose forward has no ReLU after the stem's BN."""

    def __init__(self, classes):
        super().__init__()
        self.base = resnet50(1)
        self.base.fc = nn.Identity()  # their ResNet has no fc
        self.bottleneck = nn.BatchNorm1d(2048)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(2048, classes, bias=False)

    def forward(self, x):
        global_feat = F.adaptive_avg_pool2d(trunk_forward(self.base, x, stem_relu=False), 1).flatten(1)
        return self.bottleneck(global_feat)

    test_features = forward

    def logits(self, x):
        return self.classifier(self(x))


class FastReidSource(nn.Module):
    """fast-reid meta_arch/baseline.py Baseline with backbones/resnet.py (depth 50x, LAST_STRIDE 1; the stem max-pools
    with kernel 3, stride 2, ceil_mode and no padding) and heads/embedding_head.py EmbeddingHead as
    Base-bagtricks.yml configures it (GlobalAvgPool, BN neck with frozen bias, CLS_LAYER Linear); its input is
    0-255, normalised inside by pixel_mean / pixel_std."""

    def __init__(self, classes):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([m * 255 for m in IMAGENET_MEAN]).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([s * 255 for s in IMAGENET_STD]).view(1, -1, 1, 1))
        self.backbone = resnet50(1)
        self.backbone.fc = nn.Identity()
        self.backbone.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.heads = nn.Module()
        self.heads.bottleneck = nn.Sequential(nn.BatchNorm2d(2048))
        self.heads.weight = nn.Parameter(torch.randn(classes, 2048) * 0.01)

    def forward(self, images255):
        x = (images255 - self.pixel_mean) / self.pixel_std
        pooled = F.adaptive_avg_pool2d(trunk_forward(self.backbone, x), 1)
        return self.heads.bottleneck(pooled)[..., 0, 0]  # eval: the neck's output

    def test_features(self, x):
        return self(x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255 + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)

    def logits(self, images255):
        return F.linear(self(images255), self.heads.weight)


class TorchreidSource(nn.Module):
    """torchreid models/resnet.py ResNet as resnet50() builds it (last_stride 2, fc None); eval returns the pooled v."""

    def __init__(self, classes):
        super().__init__()
        net = resnet50(2)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.global_avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(2048, classes)

    def forward(self, x):
        v = self.global_avgpool(trunk_forward(self, x))
        return v.view(v.size(0), -1)

    test_features = forward

    def logits(self, x):
        return self.classifier(self(x))


def optimizer_state(model):
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4)
    return opt.state_dict(), torch.optim.lr_scheduler.MultiStepLR(opt, [40, 70]).state_dict()


def build_source(fmt, folder):
    """(eval-mode source model, its checkpoint file in the project's format, source preprocessing of uint8 images,
    source logits of that preprocessed batch)."""
    torch.manual_seed({"cal": 1, "bot": 2, "fastreid": 3, "torchreid": 4}[fmt])
    path = folder / f"{fmt}.pth"
    if fmt == "cal":
        model = randomise_bn(CalSource(), 11).eval()
        classifier = CalClassifier(4096, PERSONS)
        clothes = {"weight": F.normalize(torch.empty(5, 4096).uniform_(-1, 1), dim=1)}  # NormalizedClassifier
        torch.save({"model_state_dict": model.state_dict(), "classifier_state_dict": classifier.state_dict(),
                    "clothes_classifier_state_dict": clothes, "rank1": np.float64(0.625), "epoch": 59}, path)
        return model, path, torchvision_preprocess, lambda x: classifier.classifier(model(x))
    if fmt == "bot":
        model = randomise_bn(BotSource(PERSONS), 12).eval()
        torch.save(model.state_dict(), path)  # ignite's ModelCheckpoint: model.state_dict(), bare
        return model, path, torchvision_preprocess, model.logits
    if fmt == "fastreid":
        from PIL import Image

        model = randomise_bn(FastReidSource(PERSONS), 13).eval()
        optimizer, scheduler = optimizer_state(model)
        torch.save({"model": model.state_dict(), "optimizer": optimizer, "scheduler": scheduler, "iteration": 11999}, path)

        def preprocess(imgs):  # T.Resize(size, interpolation=3), fast-reid's ToTensor (0-255), then the model's pixel_mean/std
            from torchvision import transforms as T

            resized = [np.asarray(T.Resize((H, W), interpolation=T.InterpolationMode.BICUBIC)(Image.fromarray(im)))
                       for im in imgs]
            x255 = torch.stack([torch.from_numpy(r.copy()).permute(2, 0, 1).float() for r in resized])
            return (x255 - model.pixel_mean) / model.pixel_std

        return model, path, preprocess, lambda x: model.logits(x * model.pixel_std + model.pixel_mean)
    model = randomise_bn(TorchreidSource(PERSONS), 14).eval()
    optimizer, scheduler = optimizer_state(model)
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}  # nn.DataParallel, saved as is
    torch.save({"state_dict": wrapped, "epoch": 60, "rank1": np.float64(0.875), "optimizer": optimizer,
                "scheduler": scheduler}, path)
    return model, path, torchvision_preprocess, model.logits


SOURCE_TEST = {  # each project's test-time settings, as config.yaml must record them
    "cal": {"height": 384, "width": 192, "test_flip": True, "resize": "pil-bilinear"},
    "bot": {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bilinear"},
    "fastreid": {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bicubic"},
    "torchreid": {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bilinear"},
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return {fmt: build_source(fmt, folder) for fmt in ("cal", "bot", "fastreid", "torchreid")}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.train_helpers import make_store

    return make_store(tmp_path_factory.mktemp("store"), ids=2 * PERSONS, outfits=3, cameras=2)  # half of them train


# ------------------------------------------------------------------------------------------- equal features --

@pytest.mark.parametrize("fmt", ["cal", "bot", "fastreid", "torchreid"])
def test_imported_features_equal_the_source_models(fmt, sources, tmp_path, capsys):
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.training.data import normalise
    from reidkit.training.resizing import resize

    model, path, preprocess, logits = sources[fmt]
    run = tmp_path / "run"
    code, out, err = console(capsys, "import-checkpoint", path, "--out", run, "--height", H, "--width", W)  # format detected
    assert code == 0, (out, err)
    assert out.startswith(f"imported {fmt} checkpoint")

    config = yaml.safe_load((run / "config.yaml").read_text())
    record = config["imported_from"]
    assert record["format"] == fmt and record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["missing_keys"] == []
    assert (config["height"], config["width"]) == (H, W)
    assert {k: config[k] for k in ("test_flip", "resize")} == {k: SOURCE_TEST[fmt][k] for k in ("test_flip", "resize")}
    assert config["backbone"]["model"] == "resnet50" and config["data"]["num_classes"] == PERSONS
    if fmt in ("fastreid", "torchreid"):
        assert {"optimizer", "scheduler"} <= set(record["dropped_keys"])
        assert "dropped: optimizer (not model weights)" in out

    runner = load_reid_model(run)
    imgs = images()
    with torch.inference_mode():
        # the model alone: the very same preprocessed tensor into both (flip-averaged where the source flips)
        x = preprocess(imgs).contiguous()
        expected = model.test_features(x).numpy()
        ours = runner.bn_features(x)
        if runner.flip:
            ours = (ours + runner.bn_features(torch.flip(x, dims=[3]))) / 2
        close(ours.numpy(), expected)
        # the preprocessing: reidkit's resize (the run's kernel) and normalisation equal the source's transform
        batch = np.stack([normalise(resize(im, H, W, runner.kernel)) for im in imgs])
        assert np.abs(batch - x.numpy()).max() < 1e-5
        # all of it, as 'reidkit eval' extracts them: uint8 images in (features are compared L2-normalised, as all four
        # sources rank them, since a changed memory layout alone moves float32 results by ~1e-6 of their size)
        features = runner.features(imgs)
        close(features, expected)
        assert np.abs(unit(features) - unit(expected)).max() < 1e-5
        # the identity classifier: the same logits on the same tensor, the same probabilities from the images
        expected_logits = logits(x)
        close(runner.model(x)["logits"].numpy(), expected_logits.numpy())
        probs = torch.softmax(expected_logits, 1).numpy()
    assert np.abs(runner.identity_probs(imgs) - probs).max() < 1e-4  # large random logits: softmax magnifies rounding


def test_source_test_sizes_are_recorded(sources, tmp_path, capsys):
    """Without --height/--width each run keeps its project's test size (CAL 384x192; the others 256x128)."""
    for fmt in ("cal", "torchreid"):
        run = tmp_path / fmt
        code, out, err = console(capsys, "import-checkpoint", sources[fmt][1], "--out", run, "--format", fmt)
        assert code == 0, err
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert {k: config[k] for k in SOURCE_TEST[fmt]} == SOURCE_TEST[fmt]
        assert config["backbone"]["last_stride"] == (1 if fmt == "cal" else 2)
        assert config["backbone"]["pooling"] == ("maxavg" if fmt == "cal" else "avg")
        assert config["strategy"] == ("cal" if fmt == "cal" else "baseline")


# ------------------------------------------------------------------- the store, eval and --init-from ---------

def test_store_label_map_and_eval(sources, store, tmp_path, capsys):
    """--store: recorded with its fingerprint; the classifier's persons named by the store's training persons;
    'reidkit eval STORE --checkpoint RUN' evaluates the imported run."""
    from reidkit import open_store
    from reidkit.training.data import build_items

    items = build_items(open_store(store))
    assert items.num_classes == PERSONS  # the checkpoints' classifiers are sized to this store
    run = tmp_path / "cal-run"
    code, out, err = console(capsys, "import-checkpoint", sources["cal"][1], "--out", run, "--store", store,
                             "--height", H, "--width", W)
    assert code == 0, err
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["store_fingerprint"] == open_store(store).fingerprint
    assert config["data"]["class_pids"] == sorted(items.label_of_pid)
    assert config["data"]["num_clothes"] == 5  # the checkpoint's clothes classifier, not the store's outfits
    assert "label map: the store's 7 training persons (sorted by id)" in out

    code, out, err = console(capsys, "eval", store, "--checkpoint", run, "--json")
    assert code == 0, err
    import json

    rows = json.loads(out)
    assert rows and all(0.0 <= r["mAP"] <= 1.0 and r["flip"] is True for r in rows)  # CAL's test flip
    assert "trained on another store" not in err


def test_label_order_of_fast_reid_is_text(store):
    """fast-reid numbers its training persons by their ids sorted as text ("..._11" before "..._2")."""
    from reidkit import open_store
    from reidkit.importing import label_map
    from reidkit.importing.plan import Plan

    opened = open_store(store)
    plan = Plan(format="fastreid", strategy="baseline", backbone={}, tensors={}, num_classes=PERSONS, classifier_bias=False,
                test={}, label_order="text")
    pids = label_map(plan, opened)["class_pids"]
    assert pids == sorted(pids, key=str) and pids != sorted(pids)
    plan.num_classes = PERSONS + 1  # not this store's persons: unnamed
    assert label_map(plan, opened)["class_pids"] == [-(i + 1) for i in range(PERSONS + 1)]


def test_train_init_from_an_imported_run(sources, store, tmp_path, capsys):
    run = tmp_path / "torchreid-run"
    code, _, err = console(capsys, "import-checkpoint", sources["torchreid"][1], "--out", run, "--height", H, "--width", W)
    assert code == 0, err
    from reidkit.pretrained_backbone import resolve_export

    resolve_export(run)  # an imported run holds its weights at the top, not in checkpoints/epoch-NNNN/
    code, out, err = console(capsys, "train", store, "--init-from", run, "--out", tmp_path / "tuned", "--epochs", 1,
                             "--steps-per-epoch", 1, "--batch", "2,2", "--height", H, "--width", W, "--device", "cpu",
                             "--num-workers", 0)
    assert code == 0, (out, err)
    tuned = yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())
    assert tuned["backbone"]["last_stride"] == 2 and tuned["backbone"]["bnneck"] is False  # the imported architecture


# ---------------------------------------------------------------------------------- partial and bad input ----

def test_classifier_left_out_is_listed_not_silent(sources, tmp_path, capsys):
    model = sources["torchreid"][0]
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    path = tmp_path / "no-classifier.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    code, out, err = console(capsys, "import-checkpoint", path, "--out", tmp_path / "run")
    assert code == 0, err
    assert "missing: heads.classifier.weight (not in the checkpoint: left at reidkit's initialisation)" in out
    assert "missing: heads.classifier.bias" in out
    record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["imported_from"]
    assert record["missing_keys"] == ["heads.classifier.weight", "heads.classifier.bias"]
    assert record["metadata"] == {"epoch": 3}


class Payload:
    """Unpickling this would run _touch: weights_only must refuse it before anything runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (str(self.marker),))


def _touch(path):
    open(path, "w").close()


@pytest.fixture(scope="module")
def plain_state():
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).state_dict()


def _bad_inputs(folder, plain_state):
    """(name, file, words the one line must hold)."""
    import pickle

    def save(name, obj):
        torch.save(obj, folder / name)
        return folder / name

    text = folder / "notes.pth"
    text.write_text("these are not weights\n")
    trunk = {k: v for k, v in plain_state.items() if not k.startswith("fc.")}
    ibn = {f"backbone.{k}": v for k, v in trunk.items()}
    ibn["backbone.layer1.0.bn1.IN.weight"] = torch.ones(32)
    ibn["backbone.layer1.0.bn1.BN.weight"] = torch.ones(32)
    ibn["heads.weight"] = torch.zeros(PERSONS, 2048)
    wrong = dict(trunk)
    wrong["layer2.0.conv1.weight"] = torch.zeros(128, 128, 1, 1)
    partial = {k: v for k, v in trunk.items() if k not in ("layer3.1.conv2.weight", "layer4.2.bn3.running_var")}
    with open(folder / "plain.pkl", "wb") as f:
        pickle.dump({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": Payload(folder / "ran-plain")}, f, protocol=4)
    return [
        ("text", text, "is not a PyTorch checkpoint"),
        ("object", save("object.pth", {"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": Payload(folder / "ran")}),
         "tests.test_import_checkpoint._touch"),
        ("plain-pickle", folder / "plain.pkl", "_touch"),
        ("unknown", save("unknown.pth", {"weights": {"encoder.proj.weight": torch.zeros(4, 4)}}), "not a checkpoint of"),
        ("ibn", save("ibn.pth", {"model": ibn}), "IBN-Net"),
        ("resnet101", save("r101.pth", {"state_dict": {**{k: v for k, v in trunk.items()},
                                                        **{f"layer3.{b}.conv1.weight": torch.zeros(256, 1024, 1, 1)
                                                           for b in range(6, 23)}}}), "ResNet-101"),
        ("vit", save("vit.pth", {"model": {"backbone.cls_token": torch.zeros(1, 1, 8), "backbone.pos_embed": torch.zeros(1, 4, 8),
                                           "heads.weight": torch.zeros(3, 8)}}), "vision transformer"),
        ("shape", save("shape.pth", {"state_dict": wrong}), "shape mismatch: layer2.0.conv1.weight is (128, 128, 1, 1)"),
        ("partial", save("partial.pth", {"state_dict": partial}), "partial ResNet-50 trunk"),
        ("fc512", save("fc512.pth", {"state_dict": {**trunk, "fc.0.weight": torch.zeros(512, 2048)}}), "fc layer"),
        ("pixels", save("pixels.pth", {"model": {**{f"backbone.{k}": v for k, v in trunk.items()},
                                                 "pixel_mean": torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1),
                                                 "heads.weight": torch.zeros(3, 2048)}}), "pixel_mean"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(plain_state, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, path, words in _bad_inputs(folder, plain_state):
        out = tmp_path / f"run-{name}"
        code, stdout, err = console(capsys, "import-checkpoint", path, "--out", out)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), (name, stdout, err)
        assert words in lines[0], (name, lines[0])
        assert "Traceback" not in err and not out.exists(), name
        assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name], name
    assert not (folder / "ran").exists() and not (folder / "ran-plain").exists()  # nothing in the pickles ran


def test_wrong_format_named_and_existing_out_refused(sources, tmp_path, capsys):
    code, _, err = console(capsys, "import-checkpoint", sources["torchreid"][1], "--format", "bot", "--out", tmp_path / "r")
    assert code == 1 and "it looks like a torchreid checkpoint (--format torchreid)" in err, err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = console(capsys, "import-checkpoint", sources["torchreid"][1], "--out", taken)
    assert code == 1 and "already exists and is not an empty folder" in err
    assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]


def test_cal_pooling_the_weights_do_not_show(tmp_path, capsys):
    """A 2048-wide CAL neck: avg or max pooling, which only the user can say."""
    torch.manual_seed(0)
    base = nn.Sequential(*list(resnet50(1).children())[:-2])
    state = {**{f"base.{k}": v for k, v in base.state_dict().items()}, **{f"bn.{k}": v for k, v in nn.BatchNorm1d(2048).state_dict().items()}}
    path = tmp_path / "cal-avg.pth"
    torch.save({"model_state_dict": state, "classifier_state_dict": {}, "epoch": 1}, path)
    code, _, err = console(capsys, "import-checkpoint", path, "--out", tmp_path / "r1")
    assert code == 1 and "give --pooling avg or --pooling max" in err
    code, out, err = console(capsys, "import-checkpoint", path, "--out", tmp_path / "r2", "--pooling", "avg")
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "r2" / "config.yaml").read_text())["backbone"]["pooling"] == "avg"
