"""The ``parser`` masker: any transformers semantic-segmentation human parser, labels and clothing as data."""
from __future__ import annotations

import numpy as np

from reidkit.contracts import DTYPES, Setting
from reidkit.errors import ReidkitError

# LIP (SCHP, DLCR's parser): 20 labels. Clothing per DLCR: everything worn except hat.
LIP_LABELS = ["background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
              "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
              "right-shoe"]
LIP_CLOTHING = ["glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants", "jumpsuits", "scarf", "skirt",
                "left-shoe", "right-shoe"]
# ATR (SegFormer "clothes" parsers): 18 labels; same rule (hat and bag kept).
ATR_LABELS = ["background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt", "left-shoe",
              "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf"]
ATR_CLOTHING = ["sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt", "left-shoe", "right-shoe", "scarf"]
PRESETS = {"lip": (LIP_LABELS, LIP_CLOTHING), "atr": (ATR_LABELS, ATR_CLOTHING)}
# The default parser: SegFormer-B2 fine-tuned on ATR (18 labels, ATR_LABELS order), a transformers model on the hub.
# DLCR used SCHP (LIP labels), which is not a transformers model; see docs/expand.md.
DEFAULT_MODEL = "mattmdjaga/segformer_b2_clothes"
DEFAULT_MODEL_PRESET = "atr"


class ParserMasker:
    """``model``: hub id or local folder (AutoModelForSemanticSegmentation + AutoImageProcessor); default
    ``mattmdjaga/segformer_b2_clothes`` (ATR labels).
    ``preset``: auto | lip | atr | model (names from the model's id2label; then ``clothing`` is required);
    auto = atr for the default model, lip for any other (name the preset that matches yours).
    ``labels`` / ``clothing``: override the preset's lists."""

    defaults = {"model": DEFAULT_MODEL, "preset": "auto", "labels": [], "clothing": [], "dtype": "float32", "dilate": 0}
    settings_spec = {
        "model": Setting(str, "semantic-segmentation human parser: hub id or local folder"),
        "preset": Setting(str, "label set: auto (atr for the default model, else lip), lip, atr, or model (its id2label)",
                          choices=("auto", "lip", "atr", "model")),
        "labels": Setting(list, "label names overriding the preset's", item=str),
        "clothing": Setting(list, "labels that are clothing, overriding the preset's", item=str),
        "dtype": Setting(str, "model dtype", choices=DTYPES),
        "dilate": Setting(int, "pixels the clothing grows by (DLCR: 0)", min=0),
    }

    def __init__(self, settings, device):
        self.s = settings
        self.device = device
        self.model = self.processor = None
        if not settings["model"]:
            raise ReidkitError("masker 'parser' needs a model: --mask-set model=HUB_ID_OR_FOLDER (e.g. a SegFormer clothes parser with preset=atr)")
        preset = settings["preset"]
        if preset == "auto":
            preset = DEFAULT_MODEL_PRESET if settings["model"] == DEFAULT_MODEL else "lip"
        self.preset = preset
        if preset == "model":
            self.labels = list(settings["labels"]) or self._model_labels()
            self.clothing = list(settings["clothing"])
            if not self.clothing:
                raise ReidkitError("masker 'parser' with preset=model needs clothing=[label, ...]")
        elif preset in PRESETS:
            labels, clothing = PRESETS[preset]
            self.labels = list(settings["labels"]) or list(labels)
            self.clothing = list(settings["clothing"]) or list(clothing)
        else:
            raise ReidkitError(f"masker 'parser': unknown preset '{preset}' (auto, lip, atr, model)")
        unknown = sorted(set(self.clothing) - set(self.labels))
        if unknown:
            raise ReidkitError(f"masker 'parser': clothing labels {unknown} are not in its label set")

    def _model_labels(self):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.s["model"])
        return [config.id2label[i].lower().replace(" ", "-").replace("_", "-") for i in range(config.num_labels)]

    def load(self):
        if self.model is not None:
            return
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        from reidkit.devices import torch_device, torch_dtype

        self.device = torch_device(self.device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.s["model"])
            model = AutoModelForSemanticSegmentation.from_pretrained(self.s["model"], dtype=torch_dtype(self.s["dtype"], self.device))
        except (OSError, ValueError) as exc:
            from reidkit.hub import load_failure

            raise ReidkitError(load_failure("parser", self.s["model"], exc, "pass a local folder with --mask-set model=DIR")) from None
        if model.config.num_labels != len(self.labels):
            raise ReidkitError(f"parser '{self.s['model']}' predicts {model.config.num_labels} labels but preset "
                               f"'{self.preset}' names {len(self.labels)}; pick another preset or give labels=[...]")
        self.model = model.to(self.device).eval()

    def label_maps(self, images):
        import torch
        import torch.nn.functional as F

        self.load()
        inputs = self.processor(images=[np.asarray(im) for im in images], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixel_values).logits.float()
        out = []
        for im, lg in zip(images, logits):
            up = F.interpolate(lg[None], size=im.shape[:2], mode="bilinear", align_corners=False)[0]
            lm = up.argmax(0).to(torch.uint8).cpu().numpy()
            if self.s["dilate"] > 0:
                lm = self._dilate_clothing(lm)
            out.append(lm)
        return out

    def _dilate_clothing(self, lm):
        """Grow clothing labels by ``dilate`` pixels into non-clothing pixels (DLCR uses none)."""
        import cv2

        ids = [self.labels.index(c) for c in self.clothing]
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.s["dilate"] + 1,) * 2)
        grown = cv2.dilate(lm, k)  # max filter: some clothing id where clothing is near
        cloth = np.isin(lm, ids)
        near = ~cloth & np.isin(grown, ids)
        lm = lm.copy()
        lm[near] = grown[near]
        return lm
