"""SD pipeline loading and speed settings (plugins/generators/sd_loading.py) on the tiny pipelines, through the real
diffusers code: fast samplers, GPU switches that must not change the picture, hub revisions resolved from a real
Hugging Face cache layout, safetensors-only loading."""
import shutil

import h5py
import numpy as np
import pytest

import reidkit
from reidkit.generation import run_expand
from tests.helpers import make_world, run_console
from tests.tiny_models import build_tiny_img2img, build_tiny_inpaint_pipeline

TINY = {"width": 32, "height": 64, "steps": 4}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("sdw") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build_tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")


def dlcr_images(world, tmp_path, model, name, batch_size=3, **settings):
    store_path = tmp_path / f"{name}.h5"
    shutil.copy(world, store_path)
    run_expand(store_path, generator="dlcr", generator_settings={**TINY, "model": str(model), **settings}, variants=1,
               limit=3, name=name, device="cpu", show_progress=False, prompts="templates", masker="store", batch_size=batch_size)
    run = reidkit.open_store(store_path).run(name)
    return [run.image(j).astype(np.int16) for j in range(len(run))], run


def test_fast_samplers_are_settings_and_deterministic(world, sd, tmp_path):
    ddim, _ = dlcr_images(world, tmp_path, sd, "ddim")
    for name in ("dpm-solver++", "unipc"):
        tag = name.replace("+", "p")
        first, run = dlcr_images(world, tmp_path, sd, f"{tag}-a", scheduler=name)
        again, _ = dlcr_images(world, tmp_path, sd, f"{tag}-b", scheduler=name)
        assert all(np.array_equal(a, b) for a, b in zip(first, again))  # seeded: same bytes
        assert any(not np.array_equal(a, d) for a, d in zip(first, ddim))  # another sampler really ran
        assert run.info["settings"]["generator_settings"]["scheduler"] == name


def test_scheduler_classes_keep_the_models_noise_schedule(sd):
    from diffusers import StableDiffusionInpaintPipeline

    from reidkit.plugins.generators.sd_loading import set_scheduler

    pipe = StableDiffusionInpaintPipeline.from_pretrained(sd)
    betas = pipe.scheduler.betas.clone()
    for name, cls in (("dpm-solver++", "DPMSolverMultistepScheduler"), ("unipc", "UniPCMultistepScheduler"),
                      ("ddim", "DDIMScheduler")):
        set_scheduler(pipe, name)
        assert type(pipe.scheduler).__name__ == cls
        assert np.allclose(pipe.scheduler.betas.numpy(), betas.numpy())  # the same trained noise schedule
    assert pipe.scheduler.config.steps_offset == 1
    set_scheduler(pipe, "dpm-solver++")
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"


@pytest.mark.parametrize("switch", [{"channels_last": True}, {"fuse_qkv": True}, {"attention_slicing": True}])
def test_gpu_switches_keep_the_picture(world, sd, tmp_path, switch):
    """Each switch reorders float math only: the images stay within two grey levels of the plain run."""
    plain, _ = dlcr_images(world, tmp_path, sd, "plain")
    switched, _ = dlcr_images(world, tmp_path, sd, "switched", **switch)
    assert max(int(np.abs(a - b).max()) for a, b in zip(plain, switched)) <= 2


def test_compile_keeps_the_picture(world, sd, tmp_path):
    torch = pytest.importorskip("torch")
    try:  # inductor needs a working C++ compiler on the CPU; skip where the machine has none
        torch.compile(lambda x: x + 1)(torch.ones(2))
    except Exception as exc:  # noqa: BLE001 - any compiler failure means "cannot run here"
        pytest.skip(f"torch.compile cannot run on this machine: {type(exc).__name__}")
    plain, _ = dlcr_images(world, tmp_path, sd, "plain")
    compiled, _ = dlcr_images(world, tmp_path, sd, "compiled", compile="default")
    assert max(int(np.abs(a - b).max()) for a, b in zip(plain, compiled)) <= 2
    # a seed's picture does not depend on the batch it was compiled and painted in (one image a call here)
    one_by_one, _ = dlcr_images(world, tmp_path, sd, "compiled-1", batch_size=1, compile="default")
    assert max(int(np.abs(a - b).max()) for a, b in zip(compiled, one_by_one)) <= 2


def hub_cache(root, repo: str, folder, commit: str = COMMIT):
    """``folder`` placed in a Hugging Face cache at ``root`` as repo ``repo``'s commit, with refs/main pointing at it."""
    base = root / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, base / "snapshots" / commit)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    return root


def test_hub_id_records_revision_and_resolved_commit(world, sd, tmp_path):
    cache = hub_cache(tmp_path / "hub", "someone/tiny-inpaint", sd)
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    for name, extra in (("main", []), ("pinned", ["--set", f"revision={COMMIT}"])):
        proc = run_console("expand", store_path, "--generator", "dlcr", "--prompts", "templates", "--masker", "store",
                           "--variants", "1", "--limit", "2", "--name", name, "--device", "cpu",
                           "--set", "model=someone/tiny-inpaint", "--set", "width=32", "--set", "height=64",
                           "--set", "steps=2", *extra, env=env)
        assert proc.returncode == 0, proc.stderr
        run = reidkit.open_store(store_path).run(name)
        with h5py.File(run.files[0], "r") as h5:
            assert h5.attrs["model_commit"] == COMMIT
            assert h5.attrs["model_revision"] == ("main" if not extra else COMMIT)
    # a revision the cache does not hold: one line, nothing made
    proc = run_console("expand", store_path, "--generator", "dlcr", "--prompts", "templates", "--masker", "store",
                       "--variants", "1", "--limit", "2", "--name", "other", "--device", "cpu",
                       "--set", "model=someone/tiny-inpaint", "--set", "revision=v2", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "someone/tiny-inpaint" in line and "other" not in reidkit.open_store(store_path).runs()


def test_local_folder_records_no_hub_commit(world, sd, tmp_path):
    _, run = dlcr_images(world, tmp_path, sd, "local")
    with h5py.File(run.files[0], "r") as h5:
        assert "model_commit" not in h5.attrs and h5.attrs["device"] == "cpu"


def test_pickled_weights_need_an_explicit_opt_in(world, sd, tmp_path):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled-sd"
    shutil.copytree(sd, pickled)
    unet = pickled / "unet"  # the UNet's weights as an older checkpoint would have them: a pickled .bin
    torch.save(load_file(unet / "diffusion_pytorch_model.safetensors"), unet / "diffusion_pytorch_model.bin")
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    proc = run_console("expand", store_path, "--generator", "dlcr", "--prompts", "templates", "--masker", "store",
                       "--variants", "1", "--limit", "2", "--device", "cpu", "--set", f"model={pickled}",
                       "--set", "width=32", "--set", "height=64", "--set", "steps=2")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # (the bank's progress lines come first)
    assert "use_safetensors=false" in proc.stderr.strip().splitlines()[-1]
    assert not reidkit.open_store(store_path).runs()
    images, _ = dlcr_images(world, tmp_path, pickled, "opted-in", use_safetensors=False)
    reference, _ = dlcr_images(world, tmp_path, sd, "reference")
    assert all(np.array_equal(a, b) for a, b in zip(images, reference))  # the same weights, the same images


def test_diffusion_reid_takes_the_whole_group_by_default(tmp_path):
    from reidkit.plugins.generators.diffusion_reid import DiffusionReidGenerator

    assert DiffusionReidGenerator.defaults["micro_batch"] == 0
    model = build_tiny_img2img(tmp_path / "tiny-img2img")
    gen = DiffusionReidGenerator({"model": str(model), "height": 32, "width": 16, "steps": 4, "scheduler": "unipc"}, "cpu")
    gen.load()
    assert type(gen.pipeline().scheduler).__name__ == "UniPCMultistepScheduler"
    calls = []
    original = gen._pipe.__class__.__call__

    def counting(pipe, *args, **kwargs):  # counts diffusion calls and their batch sizes on the real pipeline
        calls.append(kwargs["prompt_embeds"].shape[0])
        return original(pipe, *args, **kwargs)

    gen._pipe.__class__.__call__ = counting
    try:
        from types import SimpleNamespace

        rng = np.random.default_rng(0)
        items = [SimpleNamespace(seed=i, prompt=f"a person, view {i}", identity_prompt="a person", pid=1,
                                 image=rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)) for i in range(3)]
        out = gen.generate(items)
    finally:
        gen._pipe.__class__.__call__ = original
    assert calls == [3] and len(out) == 3 and out[0].shape == (32, 16, 3)
