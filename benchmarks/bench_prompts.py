"""llava-llama prompt stage: batch size 1 (DLCR, one item at a time) against batched, one run (issue 30).

Runs the plugin's own ``answer_all`` (LLaVA captioning, N person crops) and
``extract_all`` (Llama-2-chat summarising, N outfits' joined answers), batched
with left padding, at two token limits: the reference's (VLM 1024 new tokens,
LLM 511 new within 512 total) and typical reply lengths (VLM 64, LLM 48). Per
setting: seconds, items/s, new tokens/s, peak memory, and how many items'
tokens differ from batch size 1's (sampling is per item, so none should;
on GPU, rare float differences of batched kernels can flip a draw).

Weights are random (nothing downloads): ``--size real`` builds LLaVA-1.5-7B's and
Llama-2-7B's real architectures on the meta device, fills them on the target
device and saves them to a local folder that the plugin loads with
from_pretrained as users do; ``--size tiny`` uses the tests' tiny models.
Random weights never end a reply (their end-of-text logits are set to 0, out of
top-k / top-p), so every row runs to its limit: the reference limits time the
worst case, the typical limits time replies of a usual length.

Each model is loaded once per stage (load time reported apart), not once per
call as the plugin does, so the timings compare generation alone. Run from the
repository root:

    python benchmarks/bench_prompts.py --size tiny --device cpu --images 4 --batch-sizes 1,2 --typical-tokens 8 \
        --vlm-tokens 16 --llm-tokens 15 --llm-seq-len 64 --text-tokens 24
    python benchmarks/bench_prompts.py --size real --dry-run
    python benchmarks/bench_prompts.py --size real --device cuda --max-seconds 20 --json prompts.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 2 ** 30
REFERENCE = {"vlm": 1024, "llm": 511, "llm_seq": 512}  # DLCR's limits (the plugin's defaults)
NO_EOS_NOTE = ("random weights: end-of-text logits are 0, out of top-k/top-p, so every row runs to its limit "
               "(reference limits = worst case; typical limits = replies of a usual length)")
TINY_NOTE = "tiny test models: rows may end before their limit (rows_to_limit counts those that did not)"


# -- real architectures --------------------------------------------------------
def llama7b_text(vocab: int, **ids):
    """Llama-2-7B's decoder (LLaVA-1.5-7B's language model is the same, vocab 32064)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                       hidden_act="silu", tie_word_embeddings=False, **ids)


def llava15_7b_config():
    """llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (layer -2, CLS dropped), 2-layer GELU projector, Llama-7B."""
    from transformers import CLIPVisionConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                              layer_norm_eps=1e-5)
    text = llama7b_text(32064, bos_token_id=1, eos_token_id=2, pad_token_id=32001)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, projector_hidden_act="gelu",
                       vision_feature_layer=-2, vision_feature_select_strategy="default")


def llama2_7b_config():
    """meta-llama/Llama-2-7b-chat-hf."""
    return llama7b_text(32000, bos_token_id=1, eos_token_id=2)


def meta_model(kind: str):
    """The real-size model on the meta device (no memory, no init time)."""
    import torch
    from transformers import LlamaForCausalLM, LlavaForConditionalGeneration

    with torch.device("meta"):
        if kind == "vlm":
            return LlavaForConditionalGeneration(llava15_7b_config())
        return LlamaForCausalLM(llama2_7b_config())


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def fill_random(model, device, dtype, special_rows):
    """Materialise a meta model on ``device`` in ``dtype``: norms 1, biases 0, the rest N(0, 0.02); the lm_head rows
    of ``special_rows`` 0 so a random model never ends nor pads (logit 0 stays out of top-k / top-p)."""
    import torch

    model = model.to(dtype).to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
        model.get_output_embeddings().weight[list(special_rows)] = 0.0
    return model


def word_tokenizer(size: int, specials: dict[int, str], chat_template: str | None = None):
    """A word-level fast tokenizer of exactly ``size`` ids (Llama's ids for <unk> <s> </s> and ``specials``), the
    tests' clothing words, then fillers: every id the model draws decodes to a word (built offline, as the tests do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tests.tiny_models import CLOTHING_WORDS

    words = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "USER:", "ASSISTANT:"] + CLOTHING_WORDS
    vocab = {w: i for i, w in enumerate(words)}
    for i in range(len(vocab), size):
        vocab[specials.get(i, f"w{i}")] = i
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    extra = {"pad_token": "<pad>"} if "<pad>" in specials.values() else {}
    image = ["<image>"] if "<image>" in specials.values() else []
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  extra_special_tokens=image, **extra)
    if chat_template:
        tok.chat_template = chat_template
    return tok


def llava_processor(tok):
    """llava-1.5's processor: CLIP 336 resize + centre crop, OpenAI CLIP mean/std, 576 image tokens."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    images = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    return LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)


def build_real(kind: str, folder: Path, device, dtype) -> Path:
    """A real-size model folder with random weights (safetensors) and its tokenizer / processor."""
    import torch

    if kind == "vlm":
        tok = word_tokenizer(32064, {32000: "<image>", 32001: "<pad>"})
        saver, special = llava_processor(tok), (0, 1, 2, 32000, 32001)
    else:
        saver = tok = word_tokenizer(32000, {}, "{% for m in messages %}{{ bos_token }} [INST] {{ m['content'] }} [/INST]"
                                                 "{% endfor %}")
        special = (0, 1, 2)
    torch.manual_seed(0)
    model = fill_random(meta_model(kind), device, dtype, special)
    model.save_pretrained(folder)
    saver.save_pretrained(folder)
    del model
    free_memory()
    return folder


def build_tiny(kind: str, folder: Path) -> Path:
    from tests.tiny_models import build_tiny_llama_chat, build_tiny_llava

    return (build_tiny_llava if kind == "vlm" else build_tiny_llama_chat)(folder)


def free_memory():
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- inputs --------------------------------------------------------------------
def person_crops(n: int, seed: int = 0):
    """Random 128x64 RGB crops (Re-ID's usual shape; LLaVA pads them square and resizes to 336 anyway)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (128, 64, 3), dtype=np.uint8) for _ in range(n)]


def outfit_texts(n: int, tokens: int, seed: int = 0):
    """Joined answers of ``n`` outfits: about ``tokens`` clothing words each (one token a word), lengths varying by
    up to 1/8 so batches carry left padding (DLCR cuts answers to 200 words, about 256 Llama tokens)."""
    import numpy as np

    from tests.tiny_models import CLOTHING_WORDS

    rng = np.random.default_rng(seed)
    spread = max(1, tokens // 8)
    return [" ".join(rng.choice(CLOTHING_WORDS, int(tokens - rng.integers(0, spread)))) for _ in range(n)]


# -- the plugin, models kept across calls --------------------------------------
class Stop(Exception):
    """--max-seconds reached: stop after the batch in progress."""


def timed_prompts_class():
    """LlavaLlamaPrompts whose models load once (timed) and whose generate calls are recorded: the real
    answer_all / extract_all code (processor, left padding, per-item sampler, decoding) with no load in the timing."""
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts

    class TimedPrompts(LlavaLlamaPrompts):
        models, load_s, batches = {}, {}, []

        def _model(self, what, cls, dtype):
            if what not in self.models:
                t0 = time.perf_counter()
                model = super()._model(what, cls, dtype)
                self.load_s[what] = round(time.perf_counter() - t0, 1)
                record_generate(model, self.batches)
                self.models[what] = model
            return self.models[what]

        def _free(self):  # models stay loaded between settings (and stages, unless --drop-models)
            pass

        @classmethod
        def drop(cls, what):
            cls.models.pop(what, None)
            free_memory()

    return TimedPrompts


def record_generate(model, batches: list):
    """Wrap ``model.generate`` to keep each batch's new tokens and prompt lengths (exact token counts, and rows
    to compare across batch sizes even when --max-seconds stops a run early)."""
    generate = model.generate
    ends = model.generation_config.eos_token_id
    ends = set(ends if isinstance(ends, (list, tuple)) else [ends]) - {None}

    def recorded(**kwargs):
        ids = generate(**kwargs)
        start = kwargs["input_ids"].shape[1]
        new = ids[:, start:].tolist()
        batches.append((new, [until_end(r, ends) for r in new], kwargs["attention_mask"].sum(1).tolist()))
        return ids

    model.generate = recorded


def until_end(row: list[int], ends: set) -> list[int]:
    """A row's tokens up to its first end token (kept); HF pads a batch's ended rows after it."""
    for i, t in enumerate(row):
        if t in ends:
            return row[:i + 1]
    return row


def item_caps(stage: str, lengths, s) -> list[int]:
    """Each row's own new-token limit, as the plugin cuts it (LLM: prompt + reply within llm_max_seq_len)."""
    if stage == "vlm":
        return [int(s["vlm_max_new_tokens"])] * len(lengths)
    limit, total = int(s["llm_max_new_tokens"]), int(s["llm_max_seq_len"])
    return [max(0, min(limit, total - int(n))) if total > 0 else limit for n in lengths]


# -- one setting ---------------------------------------------------------------
def run_setting(cls, stage, inputs, settings, device, max_seconds):
    """One timed answer_all / extract_all; the rows kept per item (cut to their caps) and the figures."""
    import torch

    p = cls(settings, device)
    cls.batches.clear()
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    others = sum(model_bytes(m) for k, m in cls.models.items() if k != stage)  # the other stage's model, if kept
    t0 = time.perf_counter()

    def progress(done):
        if max_seconds and time.perf_counter() - t0 >= max_seconds:
            raise Stop

    cut, stopped = None, False
    try:
        _, cut = (p.answer_all if stage == "vlm" else p.extract_all)(inputs, progress=progress)
    except Stop:
        stopped = True
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rows, computed = [], 0
    for new, ended, lengths in cls.batches:
        computed += len(new) * len(new[0])  # every row runs as long as the batch's longest
        rows.extend(r[:c] for r, c in zip(ended, item_caps(stage, lengths, p.s)))
    kept = sum(len(r) for r in rows)
    row = {"stage": stage, "batch": int(settings["batch_size"]), "items": len(rows), "of": len(inputs),
           "stopped_early": stopped, "seconds": round(seconds, 2), "items_s": round(len(rows) / seconds, 3),
           "new_tokens": kept, "new_tokens_s": round(kept / seconds, 1), "computed_tokens": computed,
           "rows_to_limit": None if cut is None else int(sum(cut))}
    if cuda:  # this stage's model and its run; the other stage's resident model left out
        row["model_gib"] = round(model_bytes(cls.models[stage]) / GIB, 2) if stage in cls.models else None
        row["peak_gib"] = round((torch.cuda.max_memory_allocated() - others) / GIB, 2)
        row["resident_gib"] = round(before / GIB, 2)
    else:  # CPU: the process's peak so far (cannot be reset)
        row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2)
    return row, rows


def model_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def differing(reference: list, rows: list) -> tuple[int, int]:
    """Items done by both runs whose kept tokens (cut at their end token and cap) differ."""
    n = min(len(reference), len(rows))
    return sum(a != b for a, b in zip(reference[:n], rows[:n])), n


# -- driver --------------------------------------------------------------------
def limits(args) -> dict:
    return {"typical": {"vlm_max_new_tokens": args.typical_tokens, "llm_max_new_tokens": args.typical_llm_tokens,
                        "llm_max_seq_len": args.llm_seq_len},
            "reference": {"vlm_max_new_tokens": args.vlm_tokens, "llm_max_new_tokens": args.llm_tokens,
                          "llm_max_seq_len": args.llm_seq_len}}


def dry_run():
    """The two real configs' parameter counts, counted on the meta device."""
    out = {}
    for kind, name in (("vlm", "llava-1.5-7b"), ("llm", "llama-2-7b-chat")):
        model = meta_model(kind)
        extra = [k for k in model.state_dict() if k not in dict(model.named_parameters())]
        out[name] = {"params_b": round(param_count(model) / 1e9, 3), "saved_non_parameters": extra}
    print(json.dumps(out, indent=2))


def folders(args, tmp: Path, device, dtype) -> dict:
    """Stage -> model folder, built on first use (real size: on the device, then the memory is freed)."""
    made = {}

    def get(stage):
        if stage not in made:
            t0 = time.perf_counter()
            folder = tmp / stage
            made[stage] = str(build_real(stage, folder, device, dtype) if args.size == "real" else build_tiny(stage, folder))
            print(json.dumps({"built": stage, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        return made[stage]

    return get


def warm_up(cls, stage, inputs, settings, device):
    """One untimed item, 2 tokens: kernels, cuBLAS handles and the load happen outside the timings."""
    warm = {**settings, "batch_size": 1, "vlm_max_new_tokens": 2, "llm_max_new_tokens": 2}
    (cls(warm, device).answer_all if stage == "vlm" else cls(warm, device).extract_all)(inputs[:1])


def speedups(rows: list) -> dict:
    """items/s of each batch size against batch size 1, per stage and limit."""
    out = {}
    for r in rows:
        base = next((b for b in rows if b["stage"] == r["stage"] and b["limit"] == r["limit"] and b["batch"] == 1), None)
        if base and "items_s" in r:
            out[f"{r['stage']}-{r['limit']}-batch{r['batch']}"] = round(r["items_s"] / base["items_s"], 2)
    return out


def table(result) -> str:
    """One line per setting: the figures, the speed-up against batch 1 and the items differing from it."""
    lines = [f"{'stage':5} {'limit':9} {'batch':>5} {'items':>7} {'s':>7} {'items/s':>8} {'tok/s':>8} {'peak GiB':>8} "
             f"{'x batch1':>8} {'differ':>6}"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"{r['stage']:5} {r['limit']:9} {r['batch']:>5} {r['error']}")
            continue
        peak = r.get("peak_gib", r.get("peak_rss_gib"))
        speed = result["speedup_vs_batch1"].get(f"{r['stage']}-{r['limit']}-batch{r['batch']}", "")
        differ = next((f"{v}/{r['compared']}" for k, v in r.items() if k.startswith("differ_from_batch")), "")
        done = f"{r['items']}/{r['of']}" + ("*" if r["stopped_early"] else "")
        lines.append(f"{r['stage']:5} {r['limit']:9} {r['batch']:>5} {done:>7} {r['seconds']:>7} {r['items_s']:>8} "
                     f"{r['new_tokens_s']:>8} {peak:>8} {speed:>8} {differ:>6}")
    return "\n".join(lines + ["* stopped by --max-seconds after the batch in progress. peak GiB: on GPU this stage's "
                              "model and its run (the other stage's resident model left out); on CPU the process's peak "
                              "RSS so far"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--attn", choices=("auto", "sdpa", "eager"), default="auto")
    ap.add_argument("--images", type=int, default=16, help="crops captioned, and outfits summarised")
    ap.add_argument("--batch-sizes", default="1,8,16")
    ap.add_argument("--typical-tokens", type=int, default=64, help="VLM new tokens of a typical answer")
    ap.add_argument("--typical-llm-tokens", type=int, default=48, help="LLM new tokens of a typical reply")
    ap.add_argument("--vlm-tokens", type=int, default=REFERENCE["vlm"], help="reference VLM limit (DLCR: 1024)")
    ap.add_argument("--llm-tokens", type=int, default=REFERENCE["llm"], help="reference LLM limit (DLCR: 511)")
    ap.add_argument("--llm-seq-len", type=int, default=REFERENCE["llm_seq"], help="LLM prompt + reply (DLCR: 512)")
    ap.add_argument("--text-tokens", type=int, default=256, help="tokens of an outfit's joined answers (LLM input)")
    ap.add_argument("--limits", default="typical,reference", help="which limits to run, in this order")
    ap.add_argument("--stages", default="vlm,llm")
    ap.add_argument("--max-seconds", type=float, default=0, help="per setting: stop after the batch in progress (0: all)")
    ap.add_argument("--drop-models", action="store_true", help="free each stage's model after its settings "
                    "(default: both stay loaded, one load each; 7B + 7B in bf16 is 27 GiB)")
    ap.add_argument("--dry-run", action="store_true", help="print the real configs' parameter counts and stop")
    ap.add_argument("--json", type=Path, help="also write the results here (after every setting)")
    args = ap.parse_args()
    if args.dry_run:
        return dry_run()

    import torch

    from reidkit.devices import torch_dtype

    cuda = args.device.startswith("cuda")
    dtype_name = args.dtype or ("bfloat16" if cuda else "float32")
    dtype = torch_dtype(dtype_name, args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-prompts-"))  # real size: 27 GiB of safetensors, removed at the end
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` in gpu_session.sh: still remove them
    try:
        run_all(args, tmp, cuda, dtype_name, dtype)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(args, tmp: Path, cuda: bool, dtype_name: str, dtype):
    """Every limit, stage and batch size; the results JSON rewritten after each setting."""
    import torch

    model_of = folders(args, tmp, args.device, dtype)
    inputs = {"vlm": person_crops(args.images), "llm": outfit_texts(args.images, args.text_tokens)}
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "torch": torch.__version__, "device": torch.cuda.get_device_name() if cuda else "cpu", "size": args.size,
              "dtype": dtype_name, "attn": args.attn, "note": NO_EOS_NOTE if args.size == "real" else TINY_NOTE,
              "load_s": {}, "runs": []}
    print(result["note"], flush=True)
    cls = timed_prompts_class()
    for limit in args.limits.split(","):
        for stage in args.stages.split(","):
            base = {"vlm": model_of("vlm"), "llm": model_of("llm"), "attn_implementation": args.attn,
                    "dtype": dtype_name, **limits(args)[limit]}
            warm_up(cls, stage, inputs[stage], base, args.device)
            result["load_s"][stage] = cls.load_s.get(stage)
            first = None
            for bs in [int(b) for b in args.batch_sizes.split(",")]:
                try:
                    row, rows = run_setting(cls, stage, inputs[stage], {**base, "batch_size": bs}, args.device,
                                            args.max_seconds)
                except Exception as exc:  # one failing setting (e.g. out of memory) must not lose the others
                    row, rows = {"stage": stage, "batch": bs, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}, None
                    free_memory()
                row = {"limit": limit, **row}
                if rows is not None:  # against the first batch size's run (batch 1 by default)
                    first = (bs, rows) if first is None else first
                    row[f"differ_from_batch{first[0]}"], row["compared"] = differing(first[1], rows)
                print(json.dumps(row), flush=True)
                result["runs"].append(row)
                result["speedup_vs_batch1"] = speedups(result["runs"])
                if args.json:
                    args.json.write_text(json.dumps(result, indent=2))
            if args.drop_models:
                cls.drop(stage)
    print(table(result))


if __name__ == "__main__":
    main()
