"""The ``llava-llama`` prompt source: DLCR's clothing bank (methods.md 1.2).

A vision-language model answers ``question`` for every training image
(batched, sampled at temperature 0.2, up to ``vlm_max_new_tokens`` = 1024 new
tokens as in DLCR); the answers of one outfit (clothes id) are joined and cut
to ``max_words`` words (split on single spaces, as DLCR does); a chat LLM is
asked ``instruction`` once per outfit (temperature 0.6, top-p 0.9, up to
``llm_max_new_tokens`` = 511 new tokens with prompt + reply at most
``llm_max_seq_len`` = 512 tokens, DLCR's Llama limits); its reply is turned
into items by the ``postprocess`` rule (parsing.py; default ``dlcr``:
lowercase, no commas, items of 3+ characters); the bank joins the items with
``separator`` (default " ", DLCR) into the diffusion prompt. Replies that
give no item are counted (BankEntry.ok = False) and get, by ``fallback``, an
empty prompt (``none``, DLCR) or the joined answers cut to ``fallback_words``
words as one item (``answers``). Answers and replies that stopped at their
token limit are counted (``counts``: truncated_answers, truncated_replies;
shown by ``reidkit expand``).

Sampling is per item: every image and every outfit draws its tokens from its own generator seeded from
(``seed``, stage, item index), so a seed gives the same prompts whatever ``batch_size`` is and whichever
items share a batch (DLCR asked one item at a time).
"""
from __future__ import annotations

import numpy as np

from reidkit.contracts import DTYPES, Setting
from reidkit.errors import PluginError, ReidkitError
from reidkit.generation.contracts import BankEntry

FALLBACK_VLM_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"
# LLaVA's llava_v1 conversation (DLCR's conv mode) opens with this system line; HF's llava-1.5 template has none
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's questions.")

ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2")
VLM_TOP_K = 50  # LLaVA samples through HF generate, whose default top-k is 50 (DLCR's LLaVA, and this source before)


class LlavaLlamaPrompts:
    """Models by hub id or local folder: ``vlm`` (AutoProcessor + AutoModelForImageTextToText, e.g. LLaVA-1.5),
    ``llm`` (AutoTokenizer + AutoModelForCausalLM with a chat template, e.g. Llama-2-chat)."""

    defaults = {
        "vlm": "llava-hf/llava-1.5-7b-hf",
        "llm": "meta-llama/Llama-2-7b-chat-hf",
        "question": "What clothes is the person wearing?",
        "instruction": "Extract the clothing items from the following text: {text}",
        "vlm_temperature": 0.2,
        "vlm_system": LLAVA_V1_SYSTEM,  # put before the templated question ('' for none)
        "vlm_image": "pad",  # LLaVA-1.5 (image_aspect_ratio pad): square with the mean colour; 'processor': as the processor does
        "llm_temperature": 0.6,
        "llm_top_p": 0.9,
        "max_words": 200,
        "images_per_outfit": 0,  # 0: every image of the outfit (DLCR)
        "vlm_max_new_tokens": 1024,  # DLCR: LLaVA's max_new_tokens
        "llm_max_new_tokens": 511,  # DLCR: Llama's max_gen_len = max_seq_len - 1
        "llm_max_seq_len": 512,  # DLCR: prompt + reply within 512 tokens (0: no such limit)
        "batch_size": 8,
        "postprocess": "dlcr",  # how a reply becomes items: dlcr | reidkit (parsing.py)
        "min_item_chars": 3,  # DLCR: items of at most 2 characters dropped
        "max_item_words": 0,  # 0: no limit (DLCR); reidkit's former rule used 6
        "separator": " ",  # items joined into the prompt with it (DLCR: " "); names: space, comma
        "fallback": "none",  # a reply with no item: none = empty prompt (DLCR), answers = the joined answers
        "fallback_words": 12,
        "seed": 0,
        "dtype": "auto",
        "attn_implementation": "auto",  # auto: transformers chooses
    }

    settings_spec = {
        "vlm": Setting(str, "VLM answering the question per image: hub id or local folder"),
        "llm": Setting(str, "chat LLM extracting the clothing items: hub id or local folder"),
        "question": Setting(str, "question the VLM answers for every image"),
        "instruction": Setting(str, "LLM instruction; {text} = the outfit's joined answers"),
        "vlm_temperature": Setting(float, "VLM sampling temperature (0: greedy)", min=0),
        "vlm_system": Setting(str, "system line before the templated question ('' for none)"),
        "vlm_image": Setting(str, "pad: square with the mean colour (LLaVA-1.5); processor: as the processor does",
                             choices=("pad", "processor")),
        "llm_temperature": Setting(float, "LLM sampling temperature (0: greedy)", min=0),
        "llm_top_p": Setting(float, "LLM nucleus sampling share", min=0, min_open=True, max=1),
        "max_words": Setting(int, "answers of an outfit cut to this many words before the LLM", min=1),
        "images_per_outfit": Setting(int, "images asked per outfit (0: all, DLCR)", min=0),
        "vlm_max_new_tokens": Setting(int, "most new tokens per VLM answer", min=1),
        "llm_max_new_tokens": Setting(int, "most new tokens per LLM reply", min=1),
        "llm_max_seq_len": Setting(int, "prompt + reply within this many tokens (0: no limit)", min=0),
        "batch_size": Setting(int, "images per VLM call and outfits per LLM call (the prompts do not depend on it)", min=1),
        "postprocess": Setting(str, "how a reply becomes items (parsing.py)", choices=("dlcr", "reidkit")),
        "min_item_chars": Setting(int, "items of fewer characters are dropped (DLCR: 3)", min=0),
        "max_item_words": Setting(int, "items of more words are dropped (0: no limit)", min=0),
        "separator": Setting(str, "joins items into the prompt (names: space, comma)"),
        "fallback": Setting(str, "a reply with no item: none = empty prompt (DLCR), answers = the joined answers",
                            choices=("none", "answers")),
        "fallback_words": Setting(int, "words of the answers kept by fallback=answers", min=1),
        "seed": Setting(int, "sampling seed", min=0),
        "dtype": Setting(str, "auto: float16 on GPU, float32 on CPU", choices=DTYPES),
        "attn_implementation": Setting(str, "attention kernel of both models (auto: transformers chooses)",
                                       choices=ATTN_IMPLEMENTATIONS),
    }

    def __init__(self, settings, device):
        from reidkit.plugins.prompts.parsing import RULES

        self.s = settings = {**self.defaults, **settings}
        self.device = device
        self.counts = {"truncated_answers": 0, "truncated_replies": 0}  # filled by build; kept with the bank
        if settings["postprocess"] not in RULES:
            raise PluginError(f"llava-llama: postprocess must be one of {', '.join(RULES)}, got '{settings['postprocess']}'")
        if settings["vlm_image"] not in ("pad", "processor"):
            raise PluginError(f"llava-llama: vlm_image must be pad or processor, got '{settings['vlm_image']}'")
        if settings["fallback"] not in ("none", "answers"):
            raise PluginError(f"llava-llama: fallback must be none or answers, got '{settings['fallback']}'")
        if not isinstance(settings["separator"], str) or not settings["separator"]:
            raise PluginError("llava-llama: separator must be a non-empty string (on the command line: space or comma)")
        if settings["attn_implementation"] not in ATTN_IMPLEMENTATIONS:
            raise PluginError(f"llava-llama: attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, "
                              f"got '{settings['attn_implementation']}'")
        for key in ("vlm_max_new_tokens", "llm_max_new_tokens"):
            if int(settings[key]) < 1:
                raise PluginError(f"llava-llama: {key} must be >= 1, got {settings[key]}")

    # -- models -----------------------------------------------------------------
    def _dtype(self):
        from reidkit.devices import torch_device, torch_dtype

        self.device = torch_device(self.device)
        return torch_dtype(self.s["dtype"], self.device)

    def _load(self, what, loader):
        try:
            return loader()
        except (OSError, ValueError) as exc:
            from reidkit.hub import load_failure

            raise ReidkitError(load_failure(what, self.s[what], exc, f"pass a local folder with --prompt-set {what}=DIR")) from None

    def _model(self, what, cls, dtype):
        """``cls.from_pretrained`` of the ``what`` model on the device, in eval mode, with ``attn_implementation``."""
        attn = self.s["attn_implementation"]
        extra = {} if attn == "auto" else {"attn_implementation": attn}
        try:  # straight to the device (accelerate): no full CPU copy of a 7B model
            model = self._load(what, lambda: cls.from_pretrained(self.s[what], dtype=dtype, device_map=str(self.device), **extra))
        except ImportError as exc:  # e.g. flash_attention_2 without the flash-attn package
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise PluginError(f"llava-llama: attn_implementation={attn} cannot be used: {first}") from None
        return model.to(self.device).eval()

    def answer_all(self, images: list[np.ndarray], progress=None) -> tuple[list[str], list[bool]]:
        """The VLM's answer to ``question`` for each image (batched, sampled per image), and whether each
        stopped at ``vlm_max_new_tokens`` (cut) instead of ending by itself."""
        import torch
        from PIL import Image
        from transformers import AutoModelForImageTextToText, AutoProcessor

        dtype = self._dtype()
        processor = self._load("vlm", lambda: AutoProcessor.from_pretrained(self.s["vlm"]))
        model = self._model("vlm", AutoModelForImageTextToText, dtype)
        tok = processor.tokenizer
        tok.padding_side = "left"  # generation continues after the last real token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.s["question"]}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
        else:
            text = FALLBACK_VLM_TEMPLATE.format(question=self.s["question"])
        if self.s["vlm_system"] and not text.startswith(self.s["vlm_system"]):
            text = f"{self.s['vlm_system']} {text}"  # llava_v1: system, ' ', 'USER: ...'
        bs, out, cut = int(self.s["batch_size"]), [], []
        limit, ends = int(self.s["vlm_max_new_tokens"]), end_ids(model, tok)
        mean = getattr(getattr(processor, "image_processor", None), "image_mean", None) or [0.5, 0.5, 0.5]
        fill = tuple(int(x * 255) for x in mean)  # LLaVA's expand2square background
        square = self.s["vlm_image"] == "pad"  # a tall Re-ID crop would otherwise lose head and feet to a centre crop
        for start in range(0, len(images), bs):
            batch = [Image.fromarray(pad_to_square(im, fill) if square else im) for im in images[start : start + bs]]
            inputs = processor(images=batch, text=[text] * len(batch), padding=True, return_tensors="pt").to(self.device)
            inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
            sampler = ItemSampler(int(self.s["seed"]), 0, range(start, start + len(batch)),
                                  float(self.s["vlm_temperature"]), top_k=VLM_TOP_K)
            with torch.inference_mode():
                ids = model.generate(**inputs, **sampler.generate_kwargs(), max_new_tokens=limit)
            rows, hit = new_tokens(ids, inputs["input_ids"].shape[1], [limit] * len(batch), ends)
            out.extend(t.strip() for t in processor.batch_decode(rows, skip_special_tokens=True))
            cut.extend(hit)
            if progress:
                progress(len(out))
        del model
        self._free()
        return out, cut

    def extract_all(self, texts: list[str], progress=None) -> tuple[list[str], list[bool]]:
        """The chat LLM's reply to ``instruction`` for each outfit's joined answers, and whether each was cut
        at its limit: ``llm_max_new_tokens``, and (``llm_max_seq_len`` > 0) prompt + reply within
        ``llm_max_seq_len`` tokens, each prompt by its own length as in DLCR (one dialog at a time).
        Sampled per outfit (temperature, then top-p as Llama's sample_top_p)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = self._dtype()
        tok = self._load("llm", lambda: AutoTokenizer.from_pretrained(self.s["llm"]))
        model = self._model("llm", AutoModelForCausalLM, dtype)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        prompts = []
        for t in texts:
            instruction = self.s["instruction"].format(text=t)
            if getattr(tok, "chat_template", None):
                prompts.append(tok.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                                       add_generation_prompt=True))
            else:
                prompts.append(instruction)
        bs, out, cut = int(self.s["batch_size"]), [], []
        limit, total, ends = int(self.s["llm_max_new_tokens"]), int(self.s["llm_max_seq_len"]), end_ids(model, tok)
        for start in range(0, len(prompts), bs):
            inputs = tok(prompts[start : start + bs], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            lengths = inputs["attention_mask"].sum(1).tolist()  # each prompt's own length (left padding excluded)
            caps = [max(0, min(limit, total - int(n))) if total > 0 else limit for n in lengths]
            sampler = ItemSampler(int(self.s["seed"]), 1, range(start, start + len(caps)),
                                  float(self.s["llm_temperature"]), top_p=float(self.s["llm_top_p"]))
            with torch.inference_mode():
                ids = model.generate(**inputs, **sampler.generate_kwargs(), max_new_tokens=max(1, max(caps)),
                                     pad_token_id=tok.pad_token_id)
            rows, hit = new_tokens(ids, inputs["input_ids"].shape[1], caps, ends)
            out.extend(tok.batch_decode(rows, skip_special_tokens=True))
            cut.extend(hit)
            if progress:
                progress(len(out))
        del model
        self._free()
        return out, cut

    def _free(self):
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- the bank ---------------------------------------------------------------
    def build(self, store, groups, progress=None):
        from reidkit.plugins.prompts.parsing import cut_words, cut_words_dlcr, reply_items

        keys = list(groups)
        per = int(self.s["images_per_outfit"])
        jobs = [(k, int(i)) for k in keys for i in (groups[k][:per] if per > 0 else groups[k]).tolist()]
        n_keys = len(keys)
        answers, answers_cut = self.answer_all([store.image(i) for _, i in jobs],
                                               progress=(lambda n: progress(0.5 * n_keys * n / len(jobs))) if progress else None)
        joined = {k: [] for k in keys}
        for (k, _), a in zip(jobs, answers):
            joined[k].append(a)
        texts = [cut_words_dlcr(" ".join(joined[k]), int(self.s["max_words"])) for k in keys]
        replies, replies_cut = self.extract_all(texts, progress=(lambda n: progress(0.5 * n_keys + 0.5 * n)) if progress else None)
        self.counts = {"truncated_answers": int(sum(answers_cut)), "truncated_replies": int(sum(replies_cut))}
        entries = []
        for k, text, reply in zip(keys, texts, replies):
            items = reply_items(reply, self.s["postprocess"], int(self.s["min_item_chars"]), int(self.s["max_item_words"]))
            ok = bool(items)
            if not ok and self.s["fallback"] == "answers":  # still a parse failure; the prompt comes from the answers
                fallback = cut_words(text.lower().replace(",", " "), int(self.s["fallback_words"]))
                items = [fallback] if len(fallback) >= int(self.s["min_item_chars"]) else ["clothes"]
            # fallback none (DLCR): no items, an empty prompt
            entries.append(BankEntry(k, items, raw=f"answers: {text}\nreply: {reply}", ok=ok))
        return entries


def pad_to_square(image: np.ndarray, fill) -> np.ndarray:
    """LLaVA-1.5's expand2square: the image centred on a square of its longer side, filled with ``fill``."""
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    y, x = (side - h) // 2, (side - w) // 2
    out[y:y + h, x:x + w] = image
    return out


def end_ids(model, tok) -> set[int]:
    """The token ids that end a generation (the model's generation config, else the tokenizer's eos)."""
    ends = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ends is None:
        ends = tok.eos_token_id
    return {int(e) for e in (ends if isinstance(ends, (list, tuple)) else [ends]) if e is not None}


def new_tokens(ids, prompt_len: int, caps: list[int], ends: set[int]) -> tuple[list[list[int]], list[bool]]:
    """Each row's generated tokens cut to its cap, and whether it was cut: no end token within its cap."""
    rows, cut = [], []
    for row, cap in zip(ids[:, prompt_len:].tolist(), caps):
        row = row[:cap]
        rows.append(row)
        cut.append(len(row) >= cap and not ends.intersection(row))
    return rows, cut


class ItemSampler:
    """A logits processor for ``generate`` drawing each row's next token from that item's own generator.

    Row r of a batch is item ``items[r]``; its generator is seeded from (seed, stage, item index), so its tokens do
    not depend on the batch size nor on the other rows. HF then decodes greedily: every logit but the drawn
    token's is -inf (processors HF adds after a custom one in greedy mode, LogitNormalization and watermarking,
    keep that token the argmax). Rows that already ended still draw, but only from their own generator."""

    def __init__(self, seed: int, stage: int, items, temperature: float, top_k: int = 0, top_p: float = 1.0):
        self.seeds = [item_seed(seed, stage, i) for i in items]
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.generators = None  # made on the logits' device at the first step

    def generate_kwargs(self) -> dict:
        """``generate`` arguments: greedy over this processor's output (no sampling nor warpers of HF's own)."""
        from transformers import LogitsProcessorList

        return {"do_sample": False, "logits_processor": LogitsProcessorList([self]),
                "temperature": None, "top_k": None, "top_p": None}

    def __call__(self, input_ids, scores):
        import torch

        if self.generators is None:
            self.generators = [item_generator(s, scores.device) for s in self.seeds]
        drawn = torch.stack([draw_row(row, gen, self.temperature, self.top_k, self.top_p)
                             for row, gen in zip(scores, self.generators)])  # stays on the device: no sync per row
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)


def item_seed(seed: int, stage: int, index: int) -> int:
    """The seed of one item's sampling (stage 0: VLM answers per image, 1: LLM replies per outfit)."""
    return int(np.random.SeedSequence([int(seed), int(stage), int(index)]).generate_state(1)[0])


def item_generator(seed: int, device):
    """A torch generator of its own on ``device`` (multinomial draws where the logits lie)."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def sample_row(logits, generator, temperature: float, top_k: int = 0, top_p: float = 1.0) -> int:
    """The token id ``draw_row`` draws."""
    return int(draw_row(logits, generator, temperature, top_k, top_p))


def draw_row(logits, generator, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """One token (a 1-element tensor) from one row of logits, as HF's sampling orders it: temperature, top-k,
    top-p; then a draw from ``generator`` alone. Temperature 0: the argmax (greedy), no draw."""
    import torch

    logits = logits.float()
    if temperature == 0:
        return torch.argmax(logits).reshape(1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:  # HF's TopKLogitsWarper: below the k-th largest logit is out
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
    probs = torch.softmax(logits, -1)
    probs = torch.where(top_p_keep(probs, top_p), probs, torch.zeros_like(probs))
    return torch.multinomial(probs, 1, generator=generator)


def top_p_keep(probs, top_p: float):
    """Which tokens nucleus sampling keeps (HF's TopPLogitsWarper, Llama's sample_top_p): the smallest set of
    most probable tokens whose probability reaches ``top_p``, at least the most probable one."""
    import torch

    if top_p >= 1:
        return torch.ones_like(probs, dtype=torch.bool)
    ordered, order = torch.sort(probs, descending=True)
    before = torch.cumsum(ordered, -1) - ordered  # probability of the tokens more probable than each
    keep = before < top_p
    keep[0] = True
    return torch.zeros_like(keep).scatter(-1, order, keep)
