"""Video training (CCVID, CAL's clips): the clip sampler, one augmentation per clip, temporal pooling, CCVID end to end."""
import json

import numpy as np
import pytest
import torch
import yaml

from reidkit.errors import ReidkitError
from reidkit.training.data import CAL_AUGMENT
from reidkit.training.samplers import IdentityBatchSampler
from reidkit.training.video import ClipDataset, build_clip_items, chunk_positions, clip_positions
from tests.helpers import run_cli
from tests.miniature_layouts import adapt, build_ccvid_video


class TrackletTable:
    """A hand-made store: the columns build_items and the clip sampler read, and one image for every index."""

    def __init__(self, rows, image=None):
        # rows: (pid, camera, clothes_id, tracklet, frame); store order deliberately not frame order
        self.pid, self.camera, self.clothes_id, self.tracklet, self.frame = (np.array(c, np.int64) for c in zip(*rows))
        self.path = "hand-made"
        self._image = image

    def split(self, name):
        return np.arange(len(self.pid)) if name == "train" else np.array([], np.int64)

    def image(self, i):
        if self._image is not None:
            return self._image
        return np.full((16, 8, 3), int(i), np.uint8)  # the index in every pixel: frames are recognisable


# person 7: tracklet 0 (frames 10..14, stored backwards) and tracklet 1 (3 frames); person 9: tracklet 2 (4 frames)
ROWS = ([(7, 0, 0, 0, f) for f in (14, 13, 12, 11, 10)] + [(7, 1, 1, 1, f) for f in (1, 2, 3)]
        + [(9, 0, 2, 2, f) for f in (5, 6, 7, 8)])


# -- which frames a clip takes -------------------------------------------------------
def test_long_piece_takes_every_stride_th_frame_from_a_seeded_start():
    starts = set()
    for seed in range(300):
        pos = clip_positions(40, 8, 4, np.random.default_rng(seed))
        assert np.all(np.diff(pos) == 4) and len(pos) == 8
        starts.add(int(pos[0]))
        # CAL's TemporalRandomCrop: start uniform in [0, n - (len - 1) * stride - 1]
        assert pos[0] == np.random.default_rng(seed).integers(0, 40 - 7 * 4)
    assert starts == set(range(12))  # every allowed start, and nothing past the last one


def test_middle_piece_draws_one_frame_per_segment_and_short_piece_repeats_frames():
    for seed in range(50):
        pos = clip_positions(10, 4, 4, np.random.default_rng(seed))  # 4 <= 10 < 16: segments of 10 // 4 = 2 frames
        assert [p // 2 for p in pos] == [0, 1, 2, 3]
        short = clip_positions(3, 8, 4, np.random.default_rng(seed))  # fewer frames than the clip: drawn with repeats
        assert len(short) == 8 and list(short) == sorted(short) and set(short) <= {0, 1, 2}


def test_dense_pieces_follow_cal_sampling_step():
    assert chunk_positions(150, 64) == [range(0, 64), range(64, 150)]  # the last piece takes the rest
    assert chunk_positions(100, 64) == [range(0, 100)]
    assert chunk_positions(30, 64) == [range(0, 30)]
    assert chunk_positions(130, 0) == [range(0, 130)]  # 0: whole tracklets


def test_clip_items_group_by_tracklet_in_frame_order():
    items, pieces = build_clip_items(TrackletTable(ROWS), chunk=64)
    assert [p.tolist() for p in pieces] == [[4, 3, 2, 1, 0], [5, 6, 7], [8, 9, 10, 11]]  # store indices, frame order
    assert items.label.tolist() == [0, 0, 1] and items.clothes.tolist() == [0, 1, 2] and items.num_classes == 2
    _, pieces = build_clip_items(TrackletTable(ROWS), chunk=2)
    assert [p.tolist() for p in pieces] == [[4, 3], [2, 1, 0], [5, 6, 7], [8, 9], [10, 11]]


def test_a_short_tracklet_is_padded_by_repeating_its_frames():
    items, pieces = build_clip_items(TrackletTable(ROWS))
    data = ClipDataset(TrackletTable(ROWS), items, pieces, 6, 4, 16, 8, augment_images=False)
    frames, _ = data.frames(1, seed=3)  # tracklet 1 holds 3 frames; the clip wants 6
    assert len(frames) == 6 and set(frames.tolist()) <= {5, 6, 7} and len(set(frames.tolist())) < 6
    clip = data[(1, 3)]["image"]
    assert clip.shape == (6, 3, 16, 8) and [int(f[0, 0, 0]) for f in clip] == frames.tolist()  # the frames it says


def test_same_seed_same_clips_and_a_resumed_sampler_sees_the_same_batches():
    table = TrackletTable(ROWS)
    items, pieces = build_clip_items(table, chunk=2)
    data = ClipDataset(table, items, pieces, 4, 2, 16, 8, augment_images=False)

    def epoch_clips(sampler, epoch):
        return [[data.frames(i, s)[0].tolist() for i, s in batch] for batch in sampler.batches(epoch)]

    run = IdentityBatchSampler(items, 2, 2, seed=5)
    first = [epoch_clips(run, e) for e in range(3)]
    resumed = IdentityBatchSampler(items, 2, 2, seed=5)  # a fresh process resuming at epoch 2
    assert epoch_clips(resumed, 2) == first[2]
    assert first[0] != first[1]  # epochs draw new clips
    assert epoch_clips(IdentityBatchSampler(items, 2, 2, seed=6), 0) != first[0]


# -- one augmentation per clip -------------------------------------------------------
def test_every_frame_of_a_clip_gets_the_same_flip_and_crop():
    gradient = np.tile(np.arange(24, dtype=np.uint8)[None, :, None] * 10, (48, 1, 3))  # left-right asymmetric
    gradient[:, :, 1] = np.arange(48, dtype=np.uint8)[:, None] * 5  # and top-bottom: crops show
    table = TrackletTable(ROWS, image=gradient)
    items, pieces = build_clip_items(table)
    data = ClipDataset(table, items, pieces, 4, 1, 48, 24, augment_settings={**CAL_AUGMENT, "crop_prob": 1.0})
    seen = set()
    for seed in range(12):
        clip = data[(0, seed)]["image"].numpy()
        assert all(np.array_equal(clip[0], f) for f in clip[1:])  # one draw for the whole clip
        seen.add(clip[0].tobytes())
    assert len(seen) > 2  # and the draws do differ between clips


def test_random_erasing_is_one_rectangle_per_clip():
    from reidkit.training.data import erase_generator
    from reidkit.training.engine import device_batch

    clips = torch.full((3, 4, 3, 32, 16), 128, dtype=torch.uint8)  # 3 clips of 4 identical frames
    batch = device_batch({"image": clips, "label": torch.zeros(3, dtype=torch.long)}, "cpu",
                         {**CAL_AUGMENT, "erase": 1.0}, erase_generator(0, 0, 0))
    x = batch["image"]
    assert x.shape == (3, 4, 3, 32, 16)
    from reidkit.training.data import device_normalise_and_erase

    plain = device_normalise_and_erase(clips[0])  # the frames without erasing
    for clip in x:
        assert not torch.equal(clip, plain)  # erased (probability 1)
        assert all(torch.equal(clip[0], f) for f in clip[1:])  # the same rectangle on every frame
    assert not torch.equal(x[0, 0], x[1, 0]) or not torch.equal(x[1, 0], x[2, 0])  # clips get their own rectangles


# -- temporal average pooling ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    from tests.train_helpers import tiny_config

    from reidkit.training.model import build_model

    config = tiny_config("baseline", clip_len=4)
    config["backbone"]["model"] = "test_resnet"
    torch.manual_seed(0)
    model, _ = build_model(config, num_classes=3, num_clothes=0, clothes_of_class=[[], [], []])
    return model


def test_clip_feature_is_the_mean_of_its_frame_features(tiny_model):
    torch.manual_seed(1)
    clips = torch.randn(2, 4, 3, 32, 16)
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(clips)
        per_frame = tiny_model.backbone.features(clips.flatten(0, 1)).view(2, 4, -1)
        torch.testing.assert_close(out["feat"], per_frame.mean(1))
        # eval-mode BN is affine: the neck of the mean = the mean of per-frame necks (what per-tracklet evaluation averages)
        bn_frames = tiny_model.backbone(clips.flatten(0, 1))[1].view(2, 4, -1)
        torch.testing.assert_close(tiny_model.backbone.neck(per_frame.mean(1)), bn_frames.mean(1), rtol=1e-5, atol=1e-5)
        # image batches are unchanged: T absent
        torch.testing.assert_close(tiny_model(clips[:, 0])["feat"], per_frame[:, 0])


def test_training_mode_normalises_clip_features_not_frames(tiny_model):
    tiny_model.train()
    bn = tiny_model.backbone.bn
    before = bn.running_mean.clone()
    clips = torch.randn(3, 4, 3, 32, 16)
    with torch.no_grad():
        tiny_model(clips)
        expected = tiny_model.backbone.features(clips.flatten(0, 1)).view(3, 4, -1).mean(1)
    # running mean moved by momentum x (batch mean of the 3 clip features - old)
    torch.testing.assert_close(bn.running_mean, before + bn.momentum * (expected.mean(0) - before), rtol=1e-4, atol=1e-5)
    tiny_model.eval()


# -- settings that cannot apply --------------------------------------------------------
def test_progressive_with_clips_is_refused_in_one_line():
    from reidkit.training.config import resolve_config

    with pytest.raises(ReidkitError, match="progressive") as err:
        resolve_config("progressive", {}, {"clip_len": 8, "generated": ["gen"]})
    assert "\n" not in str(err.value)
    with pytest.raises(ReidkitError, match="--generated"):
        resolve_config("cal", {}, {"clip_len": 8, "generated": ["gen"]})
    with pytest.raises(ReidkitError, match="clip_len"):
        resolve_config("cal", {}, {"clip_len": -1})


def test_a_store_without_tracklets_is_refused():
    rows = [(1, 0, 0, -1, 0), (2, 0, 1, -1, 0)]
    with pytest.raises(ReidkitError, match="needs tracklets"):
        build_clip_items(TrackletTable(rows))


# -- CCVID end to end ------------------------------------------------------------------
TRAIN = ("--batch", "2,2", "--height", "32", "--width", "16", "--num-workers", "0", "--device", "cpu",
         "--backbone", "test_resnet", "--weights", "none", "--amp", "none")


@pytest.fixture(scope="module")
def ccvid_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ccvid")
    adapt("ccvid", build_ccvid_video(root / "data"), root / "ccvid.h5")
    return root / "ccvid.h5"


def test_video_training_resumes_exactly(ccvid_store, tmp_path):
    from tests.train_helpers import tiny_config

    from reidkit.training.engine import train

    def config(epochs):
        c = tiny_config("cal", clip_len=4, clip_stride=2, clip_chunk=4, epochs=epochs, height=32, width=16,
                        clothes_start_epoch=0, adversarial_start_epoch=1)
        c["backbone"]["model"] = "test_resnet"
        return c

    whole = train(ccvid_store, config(2), tmp_path / "whole", progress=False)
    train(ccvid_store, config(1), tmp_path / "cut", progress=False)
    resumed = train(ccvid_store, config(2), tmp_path / "cut", resume=True, progress=False)
    assert resumed["checksum"] == whole["checksum"]  # same seed, same weights, whatever the resume point
    other = config(1)
    other["seed"] = 1
    assert train(ccvid_store, other, tmp_path / "other", progress=False)["checksum"] != \
        train(ccvid_store, config(1), tmp_path / "again", progress=False)["checksum"]


def test_ccvid_trains_with_clips_and_evaluates_per_tracklet(ccvid_store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = ccvid_store
    run = tmp_path / "run"
    result = run_cli("train", store, "--strategy", "cal", "--clip-len", "4", "--epochs", "1", "--eval-every", "1",
                     "--out", run, *TRAIN)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["clip_len"] == 4 and config["clip_stride"] == 4 and config["data"]["clip_pieces"] == 6
    log = (run / "log.csv").read_text()
    assert "standard_mAP" in log and "cc_mAP" in log  # --eval-every on the tracklet protocols
    result = run_cli("eval", store, "--checkpoint", run, "--json")
    assert result.exit_code == 0, result.output
    metrics = {m["protocol"]: m for m in json.loads(result.stdout)}  # progress went to stderr
    assert set(metrics) == {"standard", "cc"}
    assert metrics["standard"]["unit"] == "tracklet" and metrics["standard"]["queries"] == 2
    assert all(0.0 <= m["mAP"] <= 1.0 and 0.0 <= m["rank1"] <= 1.0 for m in metrics.values())
