"""Diffusion-ReID: LPE consensus, tiny captioner + tiny img2img diffusion through from_pretrained(dir), runs via the engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reidkit import open_store
from reidkit.plugins.generators.identity_prompts import (
    Captioner,
    consensus_attributes,
    identity_prompt,
    parse_caption,
)
from tests.helpers import make_world, run_cli
from tests.tiny_models import build_tiny_img2img


CAPTION_WORDS = ["a", "man", "woman", "with", "short", "long", "black", "brown", "hair", "wearing", "red", "blue", "grey",
                 "jacket", "shirt", "jeans", "skirt", "and", "carrying", "backpack", "bag", "."]


def build_tiny_llava(directory, seed=0) -> Path:
    """LLaVA (CLIP vision tower without CLS + Llama) with a word-level tokenizer built locally with `tokenizers`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<unk>", "<pad>", "<s>", "</s>", "<image>", "USER", ":", "ASSISTANT"] + CAPTION_WORDS
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  extra_special_tokens=["<image>"])
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
                               tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=16, patch_size=8, projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                pad_token_id=1, bos_token_id=2, eos_token_id=3),
        image_token_index=4, vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():  # move the special tokens' output rows, so this random model answers with words, not padding
        model.lm_head.weight[:5] -= 5.0
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return Path(directory)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"sd": str(build_tiny_img2img(root / "sd")), "llava": str(build_tiny_llava(root / "llava"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w.h5", ids=4, outfits=2, cameras=2, shots=1, extra=("--height", 32, "--width", 16))


def fresh_copy(world, tmp_path):
    import shutil

    tmp_path.mkdir(parents=True, exist_ok=True)
    dst = tmp_path / "w.h5"
    shutil.copy(world, dst)
    return dst


def gen_args(tiny, per_identity=3, **extra):
    settings = {"model": tiny["sd"], "captioner": tiny["llava"], "per_identity": per_identity, "steps": 2, "height": 32,
                "width": 16, "caption_tokens": 6, "guidance": 2.0, **extra}
    if per_identity is None:  # given with the --per-identity flag instead
        del settings["per_identity"]
    out = ["--generator", "diffusion-reid"]
    for k, v in settings.items():
        out += ["--set", f"{k}={v}"]
    return out


# -- LPE: parsing and consensus on hand-made captions ------------------------------------------------------

def test_parse_caption_reads_slots_and_objects():
    a = parse_caption("A young woman with long brown hair, wearing a grey hoodie and blue jeans, white sneakers; she carries a backpack.")
    assert a.values == {"gender": "woman", "hair_length": "long", "hair_colour": "brown", "upper": "hoodie", "upper_colour": "grey",
                        "lower": "jeans", "lower_colour": "blue", "shoes": "sneakers", "shoes_colour": "white"}
    assert a.carrying == {"backpack"}
    assert parse_caption("He has a navy coat.").values == {"gender": "man", "upper": "coat", "upper_colour": "blue"}


def test_consensus_keeps_majority_attributes_only():
    captions = [
        "a man in a red jacket and black trousers, carrying a backpack",
        "a man wearing a red coat and black pants with a backpack",
        "a woman in a red jacket and blue jeans",
        "the man wears a red jacket, black trousers and holds an umbrella",
    ]
    a = consensus_attributes(captions, threshold=0.5)
    assert a["gender"] == "man" and a["upper_colour"] == "red" and a["upper"] == "jacket"
    assert a["lower_colour"] == "black" and a["lower"] == "trousers"
    assert a["carrying"] == ["backpack"]  # 2/4 >= 0.5; the umbrella (1/4) is dropped
    strict = consensus_attributes(captions, threshold=0.8)
    assert strict == {"upper_colour": "red", "carrying": []}  # only the red top is in >= 80% of the captions
    assert identity_prompt(a) == "a photo of a man, wearing a red jacket and black trousers, carrying a backpack"
    assert identity_prompt(strict) == "a photo of a person, wearing a red top"
    with pytest.raises(ValueError):
        consensus_attributes(captions, threshold=0)


def test_consensus_ties_do_not_depend_on_caption_order():
    captions = ["a man in a blue shirt", "a woman in a red shirt"]
    assert consensus_attributes(captions, 0.5) == consensus_attributes(captions[::-1], 0.5)


def test_tiny_llava_captioner_batched_equals_one_by_one(tiny):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 16, 3), dtype=np.uint8) for _ in range(3)]
    cap = Captioner(tiny["llava"], max_new_tokens=5)
    batched = cap(images, batch_size=2)
    assert len(batched) == 3 and all(batched)
    assert not any("<" in c or "ASSISTANT" in c for c in batched)  # only the answer, special tokens stripped
    assert batched == [cap([im], batch_size=1)[0] for im in images]


def test_bad_captioner_id_is_one_line(world, tmp_path, tiny):
    store = fresh_copy(world, tmp_path)
    r = run_cli("expand", store, *gen_args(tiny), "--set", f"captioner={tmp_path / 'missing'}")
    assert r.exit_code == 1 and "cannot load captioner" in r.output and "Traceback" not in r.output


# -- generation through the engine ------------------------------------------------------------------------

def run_items(store_path, name):
    run = open_store(store_path).runs()[name]
    keys = list(zip(run.source_index().tolist(), run.variant().tolist()))
    return run, {k: run.image_bytes(i) for i, k in enumerate(keys)}


def test_expand_identity_by_n_items_recorded_and_seeded(world, tmp_path, tiny):
    store = fresh_copy(world, tmp_path)
    r = run_cli("expand", store, *gen_args(tiny), "--name", "dr", "--seed", "3", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    s = open_store(store)
    run, items = run_items(store, "dr")
    train = s.split("train")
    pids = sorted(set(s.pid[train].tolist()))
    assert len(items) == 3 * len(pids)  # per identity x N, not per image
    for i in range(len(run)):
        src, v, pid = int(run.source_index()[i]), int(run.variant()[i]), int(run.column("pid")[i])
        refs = sorted(int(j) for j in train if s.pid[j] == pid)
        assert src == refs[v % len(refs)] and pid == int(s.pid[src])
        assert run.image(i).shape == s.image(src).shape
    prompts = list(run.column("prompt"))
    lpe = json.loads((s.parts_dir / "identity-prompts" / "lpe" / "part.json").read_text())
    assert lpe["settings"]["captioner"] == tiny["llava"]
    assert all(p.startswith("a photo of a ") for p in prompts)
    assert len({p.split(", seen")[0] for p in prompts}) <= len(pids)  # one identity prompt per identity
    assert len(set(prompts)) > len(pids)  # DI varies the non-identity phrases within an identity
    # same seed, fresh store -> same bytes (the engine's fixed groups give every image the same batch mates)
    store2 = fresh_copy(world, tmp_path / "again")
    assert run_cli("expand", store2, *gen_args(tiny), "--name", "dr", "--seed", "3", "--batch-size", "4").exit_code == 0
    assert run_items(store2, "dr")[1] == items
    # micro_batch 1: an image never shares a diffusion call, so the engine's batch size cannot change its bytes (the
    # default, the whole group per call, is reproducible per batch size: docs/diffusion-reid.md)
    alone = []
    for bs in ("1", "4"):
        other = fresh_copy(world, tmp_path / f"alone-{bs}")
        assert run_cli("expand", other, *gen_args(tiny, micro_batch=1), "--name", "dr", "--seed", "3",
                       "--batch-size", bs).exit_code == 0
        alone.append(run_items(other, "dr")[1])
    assert alone[0] == alone[1] and set(alone[0]) == set(items)
    # another seed -> other images
    assert run_cli("expand", store, *gen_args(tiny), "--name", "dr9", "--seed", "9").exit_code == 0
    other = run_items(store, "dr9")[1]
    assert other.keys() == items.keys() and all(other[k] != items[k] for k in items)


def test_resume_and_shards_equal_one_run(world, tmp_path, tiny):
    store = fresh_copy(world, tmp_path)
    args = (*gen_args(tiny, per_identity=2), "--name", "dr", "--chunk-size", "2")
    for shard in ("0/2", "1/2"):
        assert run_cli("expand", store, *args, "--shard", shard).exit_code == 0
    sharded = run_items(store, "dr")[1]
    r = run_cli("expand", store, *args)  # everything done: nothing generated again
    assert r.exit_code == 0 and len(run_items(store, "dr")[1]) == len(sharded)
    single = fresh_copy(world, tmp_path / "single")
    flag_args = (*gen_args(tiny, per_identity=None), "--per-identity", "2", "--name", "dr", "--chunk-size", "2")
    assert run_cli("expand", single, *flag_args).exit_code == 0
    assert run_items(single, "dr")[1] == sharded


def test_di_noise_is_bounded_and_seeded(tiny):
    import torch

    from reidkit.plugins.generators.diffusion_reid import DiffusionReidGenerator, norm_scaled

    ref = torch.randn(4, 8, 4)
    noise = norm_scaled(torch.randn(4, 8, 4), ref, 0.1)
    assert abs(float(noise.norm() / ref.norm()) - 0.1) < 1e-5
    g = DiffusionReidGenerator({"model": tiny["sd"], "height": 32, "width": 16, "latent_noise": 0.2, "embed_noise": 0.3}, "cpu")
    pipe = g.pipeline()
    ident = "a photo of a man, wearing a red jacket"
    full = g.item_prompt(ident, 5)
    assert full.startswith(ident + ", ") and full == g.item_prompt(ident, 5) and full != g.item_prompt(ident, 6)
    cond, _ = g._embeddings(pipe, [full], [ident], [5])
    g.settings["embed_noise"] = 0.0
    clean, _ = g._embeddings(pipe, [full], [ident], [5])
    n_ident = len(pipe.tokenizer(ident).input_ids) - 1
    diff = (cond - clean)[0]
    assert float(diff[:n_ident].abs().max()) == 0.0  # identity tokens untouched
    stop = min(len(pipe.tokenizer(full).input_ids) - 1, 76)
    seg = clean[0, n_ident:stop]
    assert abs(float(diff[n_ident:stop].norm() / seg.norm()) - 0.3) < 1e-4  # DI tokens: exactly the set norm ratio
    assert float(diff[stop:].abs().max()) == 0.0


def test_diffusion_noise_drawn_on_the_cpu_from_each_items_seed(tiny, monkeypatch):
    """The pipeline's noise (img2img start noise and, with an ancestral scheduler, every step's noise) comes from
    CPU generators seeded with the item's seed, whatever the generator's device, and is the same in any micro-batch."""
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img_module
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from reidkit.generation.contracts import GenerationItem
    from reidkit.plugins.generators.diffusion_reid import DiffusionReidGenerator

    g = DiffusionReidGenerator({"model": tiny["sd"], "height": 32, "width": 16, "steps": 4, "strength": 0.5, "guidance": 2.0}, "cpu")
    pipe = g.pipeline()
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)  # draws noise at every step
    g.device, on_cuda = torch.device("cuda"), g.noise_generators([1, 2])  # not used to compute: only the generators' device
    g.device = torch.device("cpu")
    assert [x.device.type for x in on_cuda] == ["cpu", "cpu"]

    draws, made = {}, []  # item seed -> its noise tensors in draw order; the generator lists generate() made
    real_noise_generators = g.noise_generators

    def recording_generators(seeds):
        made.append(real_noise_generators(seeds))
        return made[-1]

    def spy(module):
        real = module.randn_tensor

        def randn_tensor(shape, generator=None, device=None, dtype=None, **kw):
            out = real(shape, generator=generator, device=device, dtype=dtype, **kw)
            assert isinstance(generator, list) and generator is made[-1]  # generate()'s own per-item generators
            assert all(x.device.type == "cpu" for x in generator) and len(generator) == out.shape[0]
            for row, x in zip(out, generator):
                draws.setdefault(x.initial_seed(), []).append(row.clone())
            return out
        monkeypatch.setattr(module, "randn_tensor", randn_tensor)

    monkeypatch.setattr(g, "noise_generators", recording_generators)
    spy(img2img_module)
    spy(euler_a_module)
    rng = np.random.default_rng(0)
    seeds = [11, 12, 13]
    items = [GenerationItem(source_index=i, variant=0, image=rng.integers(0, 255, (32, 16, 3), dtype=np.uint8), mask=None,
                            label_map=None, labels=[], clothing=[], target_key="", items=[],
                            prompt="a photo of a man, seen from the front", seed=sd, pid=1, camera=0)
             for i, sd in enumerate(seeds)]
    by_batch = {}
    for micro_batch in (1, 3):
        g.settings["micro_batch"] = micro_batch
        draws.clear()
        g.generate(items)
        by_batch[micro_batch] = {sd: list(v) for sd, v in draws.items()}
    one, three = by_batch[1], by_batch[3]
    assert set(one) == set(seeds) and all(len(one[sd]) == 1 + 2 for sd in seeds)  # start noise + 2 steps (4 x 0.5)
    for sd in seeds:
        assert all(torch.equal(a, b) for a, b in zip(one[sd], three[sd]))  # batching does not change an item's noise
        cpu = torch.Generator("cpu").manual_seed(sd)
        for drawn in one[sd]:  # each draw is the next draw of a CPU generator seeded with the item's seed
            assert torch.equal(drawn, torch.randn((1, *drawn.shape), generator=cpu, dtype=drawn.dtype)[0])


def test_bad_settings_one_line(world, tmp_path, tiny):
    store = fresh_copy(world, tmp_path)
    for bad, words in (("strength=0", "strength"), ("latent_noise=2", "setting 'latent_noise' must be a number >= 0 and <= 1, got 2"),
                       ("conditioning=ip-adapter", "not built"), ("steps=abc", "setting 'steps' must be an integer >= 1, got 'abc'"),
                       ("height=30", "multiples of 8"), ("strength=0.2", "at least one step")):
        r = run_cli("expand", store, *gen_args(tiny), "--set", bad)
        assert r.exit_code == 1 and words in r.output, (bad, r.output)


def test_reid_confidence_filter_pass_rates_for_several_tau(world, tmp_path, tiny):
    store = fresh_copy(world, tmp_path)
    ckpt = tmp_path / "reid"
    r = run_cli("train", store, "--backbone", "resnet18", "--weights", "none", "--epochs", 1, "--steps-per-epoch", 1,
                "--batch", "2,2", "--height", 32, "--width", 16, "--num-workers", 0, "--device", "cpu", "--out", ckpt)
    assert r.exit_code == 0, r.output
    r = run_cli("expand", store, *gen_args(tiny, per_identity=2), "--name", "f", "--json",
                "--filter", f"reid-confidence:checkpoint={ckpt},tau=0.2,report_taus=[0.1,0.2,0.3,0.9]")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    rates = summary["pass_rates"]["reid-confidence"]
    run = open_store(store).runs()["f"]
    ps = np.array([run.scores(i)["reid-confidence.p"] for i in range(len(run))])
    assert set(rates) == {"0.1", "0.2", "0.3", "0.9"}
    for tau, rate in rates.items():  # the report is what the recorded scores say
        assert rate == pytest.approx(float((ps >= float(tau)).mean()))
    assert np.array_equal(run.kept(), ps >= 0.2)  # and the run kept exactly those with p >= tau
