"""Identity prompts for Diffusion-ReID: LPE (captions -> consensus attributes) and DI attribute sampling.

Language Prompts Enhancement (LPE): every image of one identity is captioned
by a vision-language model; each caption is parsed into attributes (gender,
hair, upper/lower clothing and their colours, shoes, carried objects); the
attributes that at least ``threshold`` of the captions agree on make one
identity prompt. Diversity Injection (DI) samples non-identity attributes
(viewpoint, pose, background, lighting, camera style) per generated image.
The publication names neither the vocabulary nor the rule: both are
reidkit's (docs/diffusion-reid.md). Heavy imports stay inside functions.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

CAPTION_QUESTION = "Describe the person's gender, hair, clothes with their colours, and anything they carry."
FALLBACK_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"

COLOURS = (
    "black", "white", "grey", "gray", "red", "blue", "navy", "green", "yellow", "orange", "purple",
    "pink", "brown", "beige", "khaki", "dark", "light",
)
CANONICAL_COLOUR = {"gray": "grey", "navy": "blue", "khaki": "beige"}
GENDER_WORDS = {
    "man": "man", "men": "man", "male": "man", "boy": "man", "gentleman": "man", "guy": "man", "he": "man", "his": "man",
    "woman": "woman", "women": "woman", "female": "woman", "girl": "woman", "lady": "woman", "she": "woman", "her": "woman",
}
HAIR_LENGTHS = ("long", "short", "shoulder-length", "curly", "bald")
UPPER_GARMENTS = {
    "t-shirt": "t-shirt", "tshirt": "t-shirt", "shirt": "shirt", "blouse": "blouse", "top": "top",
    "jacket": "jacket", "coat": "coat", "sweater": "sweater", "jumper": "sweater", "hoodie": "hoodie",
    "vest": "vest", "dress": "dress", "suit": "suit", "cardigan": "cardigan", "polo": "shirt",
}
LOWER_GARMENTS = {
    "jeans": "jeans", "pants": "trousers", "trousers": "trousers", "shorts": "shorts", "skirt": "skirt",
    "leggings": "leggings", "slacks": "trousers",
}
SHOES = {"shoes": "shoes", "sneakers": "sneakers", "trainers": "sneakers", "boots": "boots", "sandals": "sandals", "heels": "heels"}
CARRIED = {
    "backpack": "backpack", "bag": "bag", "handbag": "handbag", "purse": "handbag", "suitcase": "suitcase",
    "umbrella": "umbrella", "phone": "phone", "bottle": "bottle", "box": "box",
}
# Single-valued attributes, in prompt order; "carrying" is multi-valued (each object votes alone).
SLOTS = ("gender", "hair_length", "hair_colour", "upper_colour", "upper", "lower_colour", "lower", "shoes_colour", "shoes")

# DI: non-identity attributes, one drawn per generated image from the item's seed.
DIVERSITY = {
    "viewpoint": ("seen from the front", "seen from the back", "seen from the left side", "seen from the right side"),
    "pose": ("walking", "standing", "walking briskly", "standing still, arms at the sides", "turning around"),
    "background": (
        "on a city street", "in a shopping mall", "on a university campus", "in a parking lot",
        "in a park", "in an office corridor", "at a train station", "on a crosswalk",
    ),
    "lighting": ("daylight", "overcast light", "evening light", "indoor lighting", "harsh sunlight"),
    "camera_style": (
        "surveillance camera footage", "low-resolution CCTV frame", "high-angle security camera",
        "slightly blurry video frame", "wide-angle camera",
    ),
}

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


@dataclass
class Attributes:
    """Attributes read from one caption: one value per slot (or absent) and a set of carried objects."""

    values: dict = field(default_factory=dict)
    carrying: set = field(default_factory=set)


def _colour_before(words: list[str], i: int, window: int = 3) -> str | None:
    """The nearest colour word among the ``window`` words before position ``i``."""
    for j in range(i - 1, max(-1, i - 1 - window), -1):
        w = words[j]
        if w in COLOURS and w not in ("dark", "light"):
            return CANONICAL_COLOUR.get(w, w)
        if w in ("and", "with", ",") or w in UPPER_GARMENTS or w in LOWER_GARMENTS:
            break
    return None


def parse_caption(caption: str) -> Attributes:
    """Attributes of one caption: first mention wins per slot (captions lead with the salient item)."""
    words = _WORD.findall(caption.lower())
    out = Attributes()
    v = out.values

    def put(slot, value):
        if value and slot not in v:
            v[slot] = value

    for i, w in enumerate(words):
        if w in GENDER_WORDS and w not in ("he", "his", "she", "her"):
            put("gender", GENDER_WORDS[w])
        elif w == "hair":
            for j in range(max(0, i - 3), i):
                if words[j] in HAIR_LENGTHS:
                    put("hair_length", words[j])
            put("hair_colour", _colour_before(words, i))
        elif w in ("bald",):
            put("hair_length", "bald")
        elif w in UPPER_GARMENTS:
            put("upper", UPPER_GARMENTS[w])
            put("upper_colour", _colour_before(words, i))
        elif w in LOWER_GARMENTS:
            put("lower", LOWER_GARMENTS[w])
            put("lower_colour", _colour_before(words, i))
        elif w in SHOES:
            put("shoes", SHOES[w])
            put("shoes_colour", _colour_before(words, i))
        elif w in CARRIED:
            out.carrying.add(CARRIED[w])
    if "gender" not in v:  # pronouns only when no noun named the person
        for w in words:
            if w in ("he", "his", "she", "her"):
                put("gender", GENDER_WORDS[w])
                break
    return out


def consensus_attributes(captions: list[str], threshold: float = 0.5) -> dict:
    """Attributes that at least ``threshold`` of the captions state (fraction of all captions, not of those naming the slot).

    Per slot the most frequent value wins (ties: alphabetical, so the result never depends on
    set or dict order) and is kept only if its count / len(captions) >= threshold. Carried
    objects vote one by one. Returns {slot: value, ..., "carrying": [sorted objects]}.
    """
    if not captions:
        return {"carrying": []}
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"consensus threshold must be in (0, 1], got {threshold}")
    parsed = [parse_caption(c) for c in captions]
    n = len(parsed)
    out = {}
    for slot in SLOTS:
        counts = Counter(p.values[slot] for p in parsed if slot in p.values)
        if counts:
            value, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if count / n >= threshold:
                out[slot] = value
    carried = Counter(obj for p in parsed for obj in p.carrying)
    out["carrying"] = sorted(obj for obj, c in carried.items() if c / n >= threshold)
    return out


def _garment(colour, garment, generic):
    if not colour and not garment:
        return ""
    return " ".join(x for x in (colour, garment or generic) if x)


def identity_prompt(attributes: dict, subject: str = "person") -> str:
    """One prompt from consensus attributes, e.g. 'a photo of a man with short black hair, wearing a red jacket and blue jeans'."""
    a = attributes
    head = f"a photo of a {a.get('gender', subject)}"
    hair = " ".join(x for x in (a.get("hair_length"), a.get("hair_colour")) if x)
    if a.get("hair_length") == "bald":
        head += ", bald"
    elif hair:
        head += f" with {hair} hair"
    upper = _garment(a.get("upper_colour"), a.get("upper"), "top")
    worn = [
        "a " + upper if upper else "",  # upper garments are singular; trousers and shoes are plural
        _garment(a.get("lower_colour"), a.get("lower"), "trousers"),
        _garment(a.get("shoes_colour"), a.get("shoes"), "shoes"),
    ]
    worn = [w for w in worn if w]
    if worn:
        head += ", wearing " + (", ".join(worn[:-1]) + " and " + worn[-1] if len(worn) > 1 else worn[0])
    if a.get("carrying"):
        head += ", carrying " + " and ".join(f"a {o}" for o in a["carrying"])
    return head


def sample_diversity(rng: np.random.Generator, keys=tuple(DIVERSITY)) -> dict:
    """One value per DI attribute (in the fixed order of DIVERSITY, so a seed always draws the same values)."""
    return {k: DIVERSITY[k][int(rng.integers(len(DIVERSITY[k])))] for k in DIVERSITY if k in keys}


def diversity_suffix(choice: dict) -> str:
    return ", ".join(choice[k] for k in DIVERSITY if k in choice)


# -- captioning (transformers) -----------------------------------------------------------------------


class Captioner:
    """A vision-language model from transformers (id or local folder), greedy and batched.

    Works with LLaVA-style chat models (AutoProcessor + AutoModelForImageTextToText, the
    question placed by the processor's chat template or FALLBACK_TEMPLATE) and with plain
    image-to-text models (encoder-decoder captioners, which get no question).
    """

    def __init__(self, model_id: str, device: str = "cpu", dtype=None, max_new_tokens: int = 60,
                 question: str = CAPTION_QUESTION):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from reidkit.errors import PluginError

        try:
            self.processor = AutoProcessor.from_pretrained(model_id)
            self.model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype or torch.float32,
                                                                    device_map=str(device))  # straight to the device
        except OSError as exc:
            from reidkit.hub import load_failure

            raise PluginError(load_failure("captioner", model_id, exc, "pass a local folder with --set captioner=DIR")) from None
        self.model.to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.question = question
        self.model_id = model_id
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only generation continues after the last real token
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token

    def _text(self) -> str | None:
        if self.model.config.is_encoder_decoder:
            return None
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return FALLBACK_TEMPLATE.format(question=self.question)

    def __call__(self, images: list[np.ndarray], batch_size: int = 8) -> list[str]:
        import torch
        from PIL import Image

        text = self._text()
        out = []
        for start in range(0, len(images), batch_size):
            batch = [Image.fromarray(im) for im in images[start : start + batch_size]]
            kwargs = {"images": batch, "return_tensors": "pt"}
            if text is not None:
                kwargs.update(text=[text] * len(batch), padding=True)
            inputs = self.processor(**kwargs).to(self.device)
            inputs = {k: (v.to(self.model.dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            if text is not None:
                ids = ids[:, inputs["input_ids"].shape[1] :]  # keep only the answer
            out.extend(s.strip() for s in self.processor.batch_decode(ids, skip_special_tokens=True))
        return out
