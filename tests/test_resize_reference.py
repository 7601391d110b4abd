"""Resizing as the references do (issue 25 item 5): CAL's and BoT's T.Resize is PIL's antialiased bilinear on a PIL
image, CAL's RandomCroping enlarges with PIL bilinear, CAL's video Scale is PIL bicubic (training and test).

The training path (augment_geometry, the enlarged crop), the evaluation path (ImageListDataset, ReidModelRunner) and
the video path (ClipDataset) are compared on hard images (one-pixel stripes, a checkerboard, noise) with the
references' own calls; runs made before the ``resize`` setting keep OpenCV's bilinear."""
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from reidkit.errors import ReidkitError
from reidkit.training.data import CAL_AUGMENT, MEAN, STD, ImageListDataset, augment_geometry, normalise
from reidkit.training.resizing import resize

H, W = 384, 192  # CAL's input
BILINEAR, BICUBIC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC
PIL_FILTER = {"pil-bilinear": BILINEAR, "pil-bicubic": BICUBIC}


def _hard_images():
    rng = np.random.default_rng(25)
    yy, xx = np.mgrid[:500, :250]
    vertical = np.where(xx % 2 == 0, 255, 0).astype(np.uint8)  # one-pixel columns: aliases without antialiasing
    horizontal = np.where(yy % 2 == 0, 255, 0).astype(np.uint8)
    checker = np.where((yy + xx) % 2 == 0, 255, 0).astype(np.uint8)
    grey = [np.stack([g, 255 - g, g // 2], -1) for g in (vertical, horizontal, checker)]  # channels differ: RGB order kept
    noise = rng.integers(0, 256, (500, 250, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (130, 50, 3), dtype=np.uint8)  # an upscale (a small crop made big)
    crop_like = rng.integers(0, 256, (347, 141, 3), dtype=np.uint8)  # an LTCC-like size, not a multiple of the target
    return {"vertical-stripes": grey[0], "horizontal-stripes": grey[1], "checkerboard": grey[2], "noise": noise,
            "upscale": small, "crop-sized": crop_like}


IMAGES = _hard_images()


def _pil(image, height, width, flt):
    """What the references do: Image.resize on a PIL image."""
    return np.asarray(Image.fromarray(image).resize((width, height), flt))


def _torchvision_resize(image, height, width):
    """CAL's / BoT's image transform, literally: torchvision's T.Resize((H, W)) on a PIL image."""
    import torchvision.transforms as T

    return np.asarray(T.Resize((height, width))(Image.fromarray(image)))


def _grey_levels(a, b):
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


# -- the definition, by hand ------------------------------------------------------------------------------------
def test_pil_bilinear_and_bicubic_by_hand_on_a_four_pixel_row():
    row = np.array([0, 70, 140, 210], np.uint8)[None, :, None].repeat(3, 2)  # 1 x 4 -> 1 x 2: scale 2
    # PIL's antialiased bilinear: a triangle filter tri(t) = max(0, 1 - |t|) stretched by the scale, i.e. support 2.
    # Output pixel 0 is centred at input coordinate (0 + 0.5) * 2 = 1; input pixel i is centred at i + 0.5, so its
    # weight is tri((i + 0.5 - 1) / 2): i = 0 -> tri(-0.25) = 0.75, i = 1 -> tri(0.25) = 0.75, i = 2 -> tri(0.75) = 0.25,
    # i = 3 -> tri(1.25) = 0. Sum 1.75 (the edge cuts off pixel -1's 0.25): weights 3/7, 3/7, 1/7, 0
    # -> (3 * 0 + 3 * 70 + 1 * 140) / 7 = 50. Output pixel 1, centred at 3, mirrors it: weights 0, 1/7, 3/7, 3/7
    # -> (70 + 3 * 140 + 3 * 210) / 7 = 160.
    assert resize(row, 1, 2, "pil-bilinear")[0, :, 0].tolist() == [50, 160]
    # bicubic (a = -0.5, support 2 stretched to 4): pixel 0 at t = -0.25, 0.25, 0.75, 1.25 ->
    # 0.8671875, 0.8671875, 0.2265625, -0.0703125 (sum 1.890625): (70 x 0.8671875 + 140 x 0.2265625 - 210 x 0.0703125)
    # / 1.890625 = 41.07 -> 41; pixel 1 mirrors it: (70 x 0.2265625 + 350 x 0.8671875) / 1.890625 = 168.93 -> 169
    assert resize(row, 1, 2, "pil-bicubic")[0, :, 0].tolist() == [41, 169]
    # OpenCV's INTER_LINEAR interpolates between the two nearest pixels only: (0 + 70) / 2, (140 + 210) / 2
    assert resize(row, 1, 2, "cv2-bilinear")[0, :, 0].tolist() == [35, 175]


def test_opencv_bilinear_is_far_from_pil_on_stripes_and_pil_kernels_are_pil():
    stripes = IMAGES["vertical-stripes"]
    cv2_out, pil_out = resize(stripes, H, W, "cv2-bilinear"), _pil(stripes, H, W, BILINEAR)
    assert np.abs(cv2_out.astype(np.int16) - pil_out).mean() > 20  # ~33 grey levels: the aliasing this issue removes
    assert _grey_levels(resize(stripes, H, W, "pil-bilinear"), pil_out) <= 1
    assert _grey_levels(resize(stripes, H, W, "pil-bicubic"), _pil(stripes, H, W, BICUBIC)) <= 1
    assert _grey_levels(resize(stripes, H, W), pil_out) <= 1  # the default is the references'
    with pytest.raises(ValueError, match="pil-bilinear, pil-bicubic, cv2-bilinear"):
        resize(stripes, H, W, "bilinear")


# -- training path ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_training_resize_is_the_references_resize(name):
    image = IMAGES[name]
    reference = _torchvision_resize(image, H, W)
    no_crop_no_flip = [{**CAL_AUGMENT, "crop_prob": 0.0, "flip": 0.0},
                       {"crop": "pad", "pad": 10, "crop_prob": 0.0, "flip": 0.0}]  # CAL's and BoT's geometry, no draws
    for settings in no_crop_no_flip:
        out = augment_geometry(image, H, W, np.random.default_rng(0), settings, kernel="pil-bilinear")
        assert out.shape == (H, W, 3) and _grey_levels(out, reference) <= 1
        bicubic = augment_geometry(image, H, W, np.random.default_rng(0), settings, kernel="pil-bicubic")
        assert _grey_levels(bicubic, _pil(image, H, W, BICUBIC)) <= 1


def _cal_random_croping(pil_image, rng):
    """CAL's RandomCroping (data/img_transforms.py) with p = 1, its two uniform draws taken from ``rng``."""
    width, height = pil_image.size
    new_width, new_height = int(round(width * 1.125)), int(round(height * 1.125))
    resized_img = pil_image.resize((new_width, new_height), BILINEAR)
    x1 = int(round(rng.uniform(0, new_width - width)))
    y1 = int(round(rng.uniform(0, new_height - height)))
    return np.asarray(resized_img.crop((x1, y1, x1 + width, y1 + height)))


@pytest.mark.parametrize("name", ["vertical-stripes", "checkerboard", "noise", "upscale"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_enlarged_crop_is_cals_random_croping(name, seed):
    image = IMAGES[name]
    settings = {**CAL_AUGMENT, "crop_prob": 1.0, "flip": 0.0}
    rng = np.random.default_rng(seed)
    rng.random()  # augment_geometry's crop_prob draw comes first
    expected = _cal_random_croping(Image.fromarray(_torchvision_resize(image, H, W)), rng)
    out = augment_geometry(image, H, W, np.random.default_rng(seed), settings, kernel="pil-bilinear")
    assert _grey_levels(out, expected) <= 1
    # an image already at the input size: the enlargement alone (a pure 1.125x upscale)
    at_size = _torchvision_resize(image, H, W)
    rng = np.random.default_rng(seed)
    rng.random()
    enlarged = augment_geometry(at_size, H, W, np.random.default_rng(seed), settings)
    # bit for bit: OpenCV's bilinear upscale is within 1 grey level of PIL's (they differ only in rounding), so only
    # equality tells the two kernels apart here
    assert np.array_equal(enlarged, _cal_random_croping(Image.fromarray(at_size), rng))
    # with bicubic resizing the enlargement stays bilinear (both of CAL's crops pass Image.BILINEAR)
    rng = np.random.default_rng(seed)
    rng.random()
    expected = _cal_random_croping(Image.fromarray(_pil(image, H, W, BICUBIC)), rng)
    assert _grey_levels(augment_geometry(image, H, W, np.random.default_rng(seed), settings, kernel="pil-bicubic"),
                        expected) <= 1


def test_cv2_bilinear_keeps_the_old_pipeline_including_the_crop():
    import cv2

    image = IMAGES["noise"]
    settings = {**CAL_AUGMENT, "crop_prob": 1.0, "flip": 0.0}
    rng = np.random.default_rng(4)
    rng.random()
    base = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)
    big = cv2.resize(base, (216, 432), interpolation=cv2.INTER_LINEAR)
    x, y = int(round(rng.uniform(0, 24))), int(round(rng.uniform(0, 48)))
    out = augment_geometry(image, H, W, np.random.default_rng(4), settings, kernel="cv2-bilinear")
    assert np.array_equal(out, big[y:y + H, x:x + W])


# -- evaluation path ----------------------------------------------------------------------------------------------
class ImageList:
    """A source of images by index, as a store or a generated run is to the evaluation code."""

    def __init__(self, images):
        self.images = list(images)

    def image(self, i):
        return self.images[i]


class PixelModel(torch.nn.Module):
    """A model whose features are its input: what reaches a trained model, before normalisation is undone."""

    def __init__(self):
        super().__init__()
        self.backbone = lambda x: (x, x.flatten(1))


def _unnormalise(x, height, width):
    """Normalised 3 x H x W (or N x 3HW) floats back to H x W x 3 grey levels (float)."""
    x = np.asarray(x, np.float64).reshape(-1, 3, height, width)
    return ((x * STD[None, :, None, None] + MEAN[None, :, None, None]) * 255.0).transpose(0, 2, 3, 1)


def _runner(config_extra):
    from reidkit.evaluation.inference import ReidModelRunner

    return ReidModelRunner(PixelModel(), {"height": H, "width": W, "data": {"class_pids": [1]}, **config_extra}, "cpu")


@pytest.mark.parametrize("kernel", ["pil-bilinear", "pil-bicubic"])
def test_evaluation_input_is_the_references_resize(kernel):
    names = sorted(IMAGES)
    images = [IMAGES[n] for n in names]
    expected = np.stack([_pil(im, H, W, PIL_FILTER[kernel]) for im in images]).astype(np.float64)
    if kernel == "pil-bilinear":  # CAL's transform_test: T.Resize on a PIL image
        assert all(np.array_equal(_torchvision_resize(im, H, W), e) for im, e in zip(images, expected))
    dataset = ImageListDataset(ImageList(images), range(len(images)), H, W, kernel)
    for i in range(len(images)):
        assert np.abs(_unnormalise(dataset[i].numpy(), H, W)[0] - expected[i]).max() <= 1 + 1e-3
    runner = _runner({"resize": kernel})
    assert runner.kernel == kernel
    from_store = runner.extract_source(ImageList(images), np.arange(len(images)), batch_size=2, flip=False)  # eval's loader
    assert np.abs(_unnormalise(from_store, H, W) - expected).max() <= 1 + 1e-3
    from_list = runner.features(images, flip=False, batch_size=4)  # filters, refinement, demo: ReidModelRunner._batch
    assert np.abs(_unnormalise(from_list, H, W) - expected).max() <= 1 + 1e-3


def test_a_config_without_resize_evaluates_with_opencv_bilinear():
    import cv2

    stripes = IMAGES["vertical-stripes"]
    old = _runner({})  # config.yaml of a run made before the `resize` setting
    assert old.kernel == "cv2-bilinear"
    got = _unnormalise(old.features([stripes], flip=False), H, W)[0]
    assert np.abs(got - cv2.resize(stripes, (W, H), interpolation=cv2.INTER_LINEAR)).max() <= 1e-3
    assert np.abs(got - _pil(stripes, H, W, BILINEAR)).mean() > 20


# -- video path -------------------------------------------------------------------------------------------------
class Tracklets:
    """A hand-made video store: one person, one tracklet of hard frames."""

    def __init__(self, frames):
        n = len(frames)
        self.frames_ = frames
        self.pid, self.camera, self.clothes_id = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.tracklet, self.frame = np.zeros(n, np.int64), np.arange(n, dtype=np.int64)
        self.path = "hand-made"

    def split(self, name):
        return np.arange(len(self.pid)) if name == "train" else np.array([], np.int64)

    def image(self, i):
        return self.frames_[i]


@pytest.mark.parametrize("kernel", ["pil-bicubic", "pil-bilinear"])
def test_video_frames_are_the_references_scale(kernel):
    from reidkit.training.video import ClipDataset, build_clip_items

    frames = [IMAGES[n] for n in ("vertical-stripes", "checkerboard", "noise", "horizontal-stripes")]
    store = Tracklets(frames)
    items, pieces = build_clip_items(store, 0)
    h, w = 256, 128  # CAL's video input
    for augment in (False, True):  # CAL's video training draws no crop (the recipe: crop_prob 0); flip off here
        ds = ClipDataset(store, items, pieces, 4, 1, h, w, augment_images=augment,
                         augment_settings={**CAL_AUGMENT, "crop_prob": 0.0, "flip": 0.0, "erase": 0.0}, kernel=kernel)
        sample = ds[(0, 0)]
        for clip_frame, index in zip(sample["image"].numpy(), sample["frames"].tolist()):
            # ST.Scale((256, 128), interpolation=3): img.resize(size[::-1], 3) (3 is BICUBIC)
            expected = np.asarray(Image.fromarray(frames[index]).resize((w, h), PIL_FILTER[kernel]))
            assert _grey_levels(clip_frame.transpose(1, 2, 0), expected) <= 1


# -- the setting ---------------------------------------------------------------------------------------------------
def test_the_setting_defaults_to_pil_bilinear_and_refuses_other_values():
    from reidkit.training.config import resolve_config

    assert resolve_config("cal", {}, {})["resize"] == "pil-bilinear"
    assert resolve_config("baseline", {"resize": "pil-bicubic"}, {})["resize"] == "pil-bicubic"
    with pytest.raises(ReidkitError) as err:
        resolve_config("cal", {"resize": "bicubic"}, {}, file_source="run.yaml")
    message = str(err.value)
    assert "\n" not in message and "'resize'" in message and "run.yaml" in message
    assert "pil-bilinear, pil-bicubic, cv2-bilinear" in message


def test_the_cal_video_recipe_resizes_bicubic():
    from reidkit.training.config import read_config_file, resolve_config

    assert resolve_config(None, read_config_file("cal-video"), {})["resize"] == "pil-bicubic"


# -- a run folder end to end: its kernel is recorded, and an old one keeps OpenCV's ---------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.train_helpers import make_store

    return make_store(tmp_path_factory.mktemp("resize-world"), ids=4, outfits=2)


def test_runs_train_with_their_kernel_and_old_runs_keep_opencv(world, tmp_path):
    from tests.train_helpers import tiny_config

    from reidkit import open_store
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.training.engine import train

    def config(**extra):  # 48 x 24 from the store's 64 x 32 images: every image is shrunk
        return tiny_config("baseline", height=48, width=24, **extra)

    pil = train(world, config(), tmp_path / "pil", progress=False, max_steps=1)
    again = train(world, config(), tmp_path / "again", progress=False, max_steps=1)
    old = train(world, config(resize="cv2-bilinear"), tmp_path / "old", progress=False, max_steps=1)
    assert pil["checksum"] == again["checksum"] and pil["checksum"] != old["checksum"]  # the kernel reaches the loader
    assert yaml.safe_load((tmp_path / "pil" / "config.yaml").read_text())["resize"] == "pil-bilinear"
    # a run folder written before the setting existed: config.yaml without `resize`
    path = tmp_path / "old" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["resize"]
    path.write_text(yaml.safe_dump(saved))
    runner = load_reid_model(tmp_path / "old", "cpu")
    assert runner.kernel == "cv2-bilinear"
    store = open_store(world)
    images = [store.image(int(i)) for i in store.split("query")[:3]]
    with torch.inference_mode():
        import cv2

        direct = runner.model.backbone(torch.from_numpy(np.stack([
            normalise(cv2.resize(im, (24, 48), interpolation=cv2.INTER_LINEAR)) for im in images])))[1].numpy()
    assert np.allclose(runner.features(images, flip=False), direct, atol=1e-5)
    # resumed with today's defaults, it goes on with OpenCV's bilinear and config.yaml still says so
    train(world, config(epochs=2), tmp_path / "old", resume=True, progress=False, max_steps=1)
    assert "resize" not in yaml.safe_load(path.read_text())
    assert load_reid_model(tmp_path / "old", "cpu").kernel == "cv2-bilinear"
    assert load_reid_model(tmp_path / "pil", "cpu").kernel == "pil-bilinear"
