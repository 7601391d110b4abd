"""README's four-line pipeline, run verbatim: adapt ltcc, expand with dlcr, train progressive, eval.

The four command lines are read from README.md and run as they are, with the
installed console script, in a folder holding a miniature LTCC_ReID (real
layout and file names). Nothing on the command line is changed: the real
model ids resolve from a temporary Hugging Face hub cache holding tiny
random models under those ids (HF_HUB_OFFLINE=1), and the sizes a CPU can
afford (diffusion working size and steps, backbone, epochs, image size)
come from a $REIDKIT_CONFIG file, the user-level defaults.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import reidkit_exe

README = Path(__file__).resolve().parents[1] / "README.md"
VARIANTS = 10

# LTCC_ReID as distributed, in miniature: person_outfit_camera_frame.png; train has 2 persons and 4 outfits,
# each query person has a same-clothes and an other-clothes image in test/ (gallery) from other cameras
LTCC_FILES = {
    "train": ["001_1_c1_000101.png", "001_1_c2_000102.png", "001_2_c3_000103.png",
              "002_1_c1_000201.png", "002_1_c4_000202.png", "002_2_c5_000203.png"],
    "query": ["010_1_c1_001001.png", "012_1_c2_001201.png"],
    "test": ["010_1_c3_001002.png", "010_2_c4_001003.png", "012_1_c5_001202.png", "012_2_c6_001203.png"],
}


def readme_pipeline() -> list[str]:
    """The four `reidkit adapt / expand / train / eval` lines of README's pipeline block, comments removed."""
    lines = []
    for line in README.read_text().splitlines():
        command = line.split("#", 1)[0].strip()
        if re.match(r"reidkit (adapt|expand|train|eval) ", command + " ") and line.startswith("    "):
            lines.append(command)
        if len(lines) == 4:
            break
    assert [c.split()[1] for c in lines] == ["adapt", "expand", "train", "eval"], lines
    return lines


def build_ltcc_images(root: Path, height: int = 64, width: int = 32) -> Path:
    """A miniature LTCC_ReID: crops big enough for the parser and the diffusion model (a figure on a background)."""
    import cv2

    base = root / "LTCC_ReID"
    for split, names in LTCC_FILES.items():
        (base / split).mkdir(parents=True)
        for name in names:
            pid, outfit, cam = re.match(r"(\d+)_(\d+)_c(\d+)_", name).groups()
            rng = np.random.default_rng([int(pid), int(outfit), int(cam)])
            img = np.full((height, width, 3), rng.integers(60, 200, 3), np.uint8)
            upper = np.random.default_rng([int(pid), int(outfit), 1]).integers(0, 256, 3).tolist()
            lower = np.random.default_rng([int(pid), int(outfit), 2]).integers(0, 256, 3).tolist()
            skin = np.random.default_rng([int(pid), 3]).integers(120, 230, 3).tolist()
            cv2.circle(img, (width // 2, height // 8), height // 12, skin, -1)
            cv2.rectangle(img, (width // 4, height // 5), (3 * width // 4, height // 2), upper, -1)
            cv2.rectangle(img, (width // 4, height // 2), (3 * width // 4, 15 * height // 16), lower, -1)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            assert cv2.imwrite(str(base / split / name), img)
    (base / "info").mkdir()
    (base / "info" / "cloth-change_id_test.txt").write_text("010\n012\n")
    return base


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path):
    """Place a saved model folder in a Hugging Face hub cache as if downloaded: snapshots/<commit>/ + refs/main."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """Tiny random models under the real ids: SD-1.5 inpainting, the SegFormer clothes parser, LLaVA, Llama-2-chat."""
    from reidkit.plugins.maskers.parser import ATR_LABELS, DEFAULT_MODEL
    from reidkit.plugins.generators.dlcr import DEFAULT_MODEL as SD_MODEL
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts
    from tests.tiny_models import build_tiny_inpaint_pipeline, build_tiny_llama_chat, build_tiny_llava, build_tiny_segformer

    root = tmp_path_factory.mktemp("models")
    cache = root / "hub"
    built = {
        SD_MODEL: build_tiny_inpaint_pipeline(root / "sd"),
        DEFAULT_MODEL: build_tiny_segformer(root / "parser", ATR_LABELS),
        LlavaLlamaPrompts.defaults["vlm"]: build_tiny_llava(root / "llava"),
        LlavaLlamaPrompts.defaults["llm"]: build_tiny_llama_chat(root / "llama"),
    }
    for repo_id, folder in built.items():
        put_in_hub_cache(cache, repo_id, folder)
    return root


USER_CONFIG = """\
# what a CPU can afford; the command lines stay as README shows them
expand:
  device: cpu
  batch_size: 30
  generator_settings:
    dlcr: {width: 32, height: 64, steps: 2}
  prompt_settings:
    llava-llama: {vlm_max_new_tokens: 8, llm_max_new_tokens: 12}
train:
  device: cpu
  num_workers: 0
  epochs: 2
  height: 64
  width: 32
  ids_per_batch: 2
  images_per_id: 2
  eval_batch_size: 16
  backbone: {model: resnet18, weights: null}
"""


@pytest.mark.slow
def test_readme_pipeline_runs_verbatim(hub_cache, tmp_path):
    import reidkit
    from reidkit.generation.bank import ClothingBank
    from reidkit.plugins.maskers.parser import ATR_CLOTHING, ATR_LABELS, DEFAULT_MODEL

    commands = readme_pipeline()
    assert "--root" not in commands[0] and "--out" not in commands[0]  # `reidkit adapt ltcc` finds LTCC_ReID itself
    work = tmp_path / "work"
    work.mkdir()
    build_ltcc_images(work)
    config = tmp_path / "reidkit.yaml"
    config.write_text(USER_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "REIDKIT_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hub_cache), HF_HUB_CACHE=str(hub_cache / "hub"),
               REIDKIT_CONFIG=str(config), TOKENIZERS_PARALLELISM="false")
    out = {}
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "reidkit"
        proc = subprocess.run([reidkit_exe(), *argv[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        out[argv[1]] = proc

    store = reidkit.open_store(work / "ltcc.h5")
    train = store.split("train")
    assert len(train) == len(LTCC_FILES["train"])
    # expand chose dlcr's own masker and prompt source, and said so
    assert "masker: parser (dlcr's default)" in out["expand"].stderr
    assert "prompts: llava-llama (dlcr's default)" in out["expand"].stderr
    masks = store.mask_sets()["parser"]
    assert masks.info["masker"] == "parser" and masks.info["settings"]["model"] == DEFAULT_MODEL
    assert masks.labels == ATR_LABELS and masks.clothing == ATR_CLOTHING
    assert all(int(i) in masks for i in train)
    run_name = re.search(r"--generated (\S+)", commands[2]).group(1)
    run = store.run(run_name)
    settings = run.info["settings"]
    assert (settings["generator"], settings["masker"], settings["prompts"]) == ("dlcr", "parser", "llava-llama")
    assert settings["mask_set"] == "parser" and settings["bank"].startswith("llava-llama")  # + a hash of the token limits
    assert settings["generator_settings"]["steps"] == 2  # from $REIDKIT_CONFIG
    bank = ClothingBank.read(store.parts_dir / "prompts" / settings["bank"])
    assert bank.info["source"] == "llava-llama"
    assert set(bank.keys) == set(store.clothes_key[train])
    kept = run.column("kept")
    per_source = {int(i): 0 for i in train}
    for src, k in zip(run.source_index(), kept):
        per_source[int(src)] += bool(k)
    assert set(per_source.values()) == {VARIANTS}, per_source
    # train wrote its model; eval reports LTCC's two protocols
    run_dir = work / re.search(r"--out (\S+)", commands[2]).group(1)
    assert (run_dir / "model.safetensors").is_file()
    import yaml

    trained = yaml.safe_load((run_dir / "config.yaml").read_text())  # $REIDKIT_CONFIG's train: section, options on top
    assert (trained["strategy"], trained["generated"], trained["epochs"]) == ("progressive", [run_name], 2)
    assert (trained["height"], trained["width"], trained["backbone"]["model"]) == (64, 32, "resnet18")
    table = out["eval"].stdout
    assert re.search(r"^.*\bstandard\b", table, re.M) and re.search(r"^.*\bcc\b", table, re.M), table
