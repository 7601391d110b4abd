"""The ``llava-llama`` prompt source: DLCR's clothing bank (methods.md 1.2).

A vision-language model answers ``question`` for every training image
(batched, sampled at temperature 0.2); the answers of one outfit (clothes
id) are joined and cut to ``max_words`` words; a chat LLM is asked
``instruction`` once per outfit (temperature 0.6, top-p 0.9); its reply is
parsed into items (lowercase, no commas, items of 3+ characters). Replies
that do not parse are counted (BankEntry.ok = False) and fall back to the
joined answers cut to ``fallback_words`` words as one item.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.generation.contracts import BankEntry

FALLBACK_VLM_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"


def _seed_all(seed: int):
    import torch

    torch.manual_seed(seed)


class LlavaLlamaPrompts:
    """Models by hub id or local folder: ``vlm`` (AutoProcessor + AutoModelForImageTextToText, e.g. LLaVA-1.5),
    ``llm`` (AutoTokenizer + AutoModelForCausalLM with a chat template, e.g. Llama-2-chat)."""

    defaults = {
        "vlm": "llava-hf/llava-1.5-7b-hf",
        "llm": "meta-llama/Llama-2-7b-chat-hf",
        "question": "What clothes is the person wearing?",
        "instruction": "Extract the clothing items from the following text: {text}",
        "vlm_temperature": 0.2,
        "llm_temperature": 0.6,
        "llm_top_p": 0.9,
        "max_words": 200,
        "images_per_outfit": 0,  # 0: every image of the outfit (DLCR)
        "vlm_max_new_tokens": 60,
        "llm_max_new_tokens": 96,
        "batch_size": 8,
        "min_item_chars": 3,
        "fallback_words": 12,
        "seed": 0,
        "dtype": "auto",
    }

    def __init__(self, settings, device):
        self.s = settings
        self.device = device

    # -- models -----------------------------------------------------------------
    def _dtype(self):
        from reidkit.generation.devices import torch_device, torch_dtype

        self.device = torch_device(self.device)
        return torch_dtype(self.s["dtype"], self.device)

    def _load(self, what, loader):
        try:
            return loader()
        except (OSError, ValueError) as exc:
            raise ReidkitError(f"cannot load {what} '{self.s[what]}': {str(exc).strip().splitlines()[0]}") from None

    def answer_all(self, images: list[np.ndarray], progress=None) -> list[str]:
        """The VLM's answer to ``question`` for each image (batched, seeded per batch)."""
        import torch
        from PIL import Image
        from transformers import AutoModelForImageTextToText, AutoProcessor

        dtype = self._dtype()
        processor = self._load("vlm", lambda: AutoProcessor.from_pretrained(self.s["vlm"]))
        model = self._load("vlm", lambda: AutoModelForImageTextToText.from_pretrained(self.s["vlm"], dtype=dtype))
        model.to(self.device).eval()
        tok = processor.tokenizer
        tok.padding_side = "left"  # generation continues after the last real token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.s["question"]}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
        else:
            text = FALLBACK_VLM_TEMPLATE.format(question=self.s["question"])
        bs, out = int(self.s["batch_size"]), []
        for b, start in enumerate(range(0, len(images), bs)):
            batch = [Image.fromarray(im) for im in images[start : start + bs]]
            inputs = processor(images=batch, text=[text] * len(batch), padding=True, return_tensors="pt").to(self.device)
            inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
            _seed_all(int(np.random.SeedSequence([int(self.s["seed"]), 0, b]).generate_state(1)[0]))
            with torch.inference_mode():
                ids = model.generate(**inputs, do_sample=True, temperature=float(self.s["vlm_temperature"]),
                                     max_new_tokens=int(self.s["vlm_max_new_tokens"]))
            out.extend(t.strip() for t in processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
            if progress:
                progress(len(out))
        del model
        self._free()
        return out

    def extract_all(self, texts: list[str], progress=None) -> list[str]:
        """The chat LLM's reply to ``instruction`` for each outfit's joined answers."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = self._dtype()
        tok = self._load("llm", lambda: AutoTokenizer.from_pretrained(self.s["llm"]))
        model = self._load("llm", lambda: AutoModelForCausalLM.from_pretrained(self.s["llm"], dtype=dtype))
        model.to(self.device).eval()
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
        bs, out = int(self.s["batch_size"]), []
        for b, start in enumerate(range(0, len(prompts), bs)):
            inputs = tok(prompts[start : start + bs], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            _seed_all(int(np.random.SeedSequence([int(self.s["seed"]), 1, b]).generate_state(1)[0]))
            with torch.inference_mode():
                ids = model.generate(**inputs, do_sample=True, temperature=float(self.s["llm_temperature"]),
                                     top_p=float(self.s["llm_top_p"]), max_new_tokens=int(self.s["llm_max_new_tokens"]),
                                     pad_token_id=tok.pad_token_id)
            out.extend(tok.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
            if progress:
                progress(len(out))
        del model
        self._free()
        return out

    def _free(self):
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- the bank ---------------------------------------------------------------
    def build(self, store, groups, progress=None):
        from reidkit.plugins.prompts.parsing import cut_words, parse_items

        keys = list(groups)
        per = int(self.s["images_per_outfit"])
        jobs = [(k, int(i)) for k in keys for i in (groups[k][:per] if per > 0 else groups[k]).tolist()]
        n_keys = len(keys)
        answers = self.answer_all([store.image(i) for _, i in jobs],
                                  progress=(lambda n: progress(0.5 * n_keys * n / len(jobs))) if progress else None)
        joined = {k: [] for k in keys}
        for (k, _), a in zip(jobs, answers):
            joined[k].append(a)
        texts = [cut_words(" ".join(joined[k]), int(self.s["max_words"])) for k in keys]
        replies = self.extract_all(texts, progress=(lambda n: progress(0.5 * n_keys + 0.5 * n)) if progress else None)
        entries = []
        for k, text, reply in zip(keys, texts, replies):
            items = parse_items(reply, int(self.s["min_item_chars"]))
            ok = bool(items)
            if not ok:  # counted as a parse failure; the outfit still gets a prompt from its answers
                fallback = cut_words(text.lower().replace(",", " "), int(self.s["fallback_words"]))
                items = [fallback] if len(fallback) >= int(self.s["min_item_chars"]) else ["clothes"]
            entries.append(BankEntry(k, items, raw=f"answers: {text}\nreply: {reply}", ok=ok))
        return entries
