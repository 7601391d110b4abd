"""Tiny models built from configs and saved with save_pretrained, for tests that load them the way users do.

Every builder writes a folder and returns its path; code under test loads it
through the same ``from_pretrained(id_or_dir)`` call it uses for hub ids.
Weights are random (seeded): outputs are noise-like but the real pipelines run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def _byte_chars() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table: the base symbols of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_clip_tokenizer(directory) -> Path:
    """A CLIP BPE tokenizer (vocab.json + merges.txt) over single bytes, a few merges, and the special tokens."""
    from transformers import CLIPTokenizer

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["e r</w>", "r e", "s h", "sh i"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=77)
    tok.save_pretrained(d)
    return d


# Sizes per pipeline kind: inpainting has a 9-channel UNet (latents + mask + masked image).
TINY_SD = {
    "inpaint": {"unet": (16, 32), "in_channels": 9, "vae_blocks": (8, 16, 16), "text_layers": 2},
    "img2img": {"unet": (8, 16), "in_channels": 4, "vae_blocks": (8, 16), "text_layers": 1},
}


def build_tiny_sd_pipeline(directory, kind: str = "inpaint", seed: int = 0) -> Path:
    """A tiny Stable Diffusion pipeline folder (``inpaint`` or ``img2img``): UNet, VAE, CLIP text encoder, DDIM."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    size = TINY_SD[kind]
    d = Path(directory)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=size["unet"], layers_per_block=1, sample_size=16, in_channels=size["in_channels"], out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
    )
    blocks = len(size["vae_blocks"])
    vae = AutoencoderKL(
        block_out_channels=size["vae_blocks"], in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks, norm_num_groups=8,
        sample_size=32,
    )
    tok_dir = write_clip_tokenizer(d / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=size["text_layers"],
        vocab_size=len(tokenizer), max_position_embeddings=77, projection_dim=16,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline_cls = StableDiffusionInpaintPipeline if kind == "inpaint" else StableDiffusionImg2ImgPipeline
    pipe = pipeline_cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(d)
    shutil.rmtree(tok_dir)  # the pipeline saved its own copy under tokenizer/
    return d


def build_tiny_inpaint_pipeline(directory, seed: int = 0) -> Path:
    """A StableDiffusionInpaintPipeline folder: 9-channel UNet, 4-channel VAE (factor 4), tiny CLIP text encoder."""
    return build_tiny_sd_pipeline(directory, "inpaint", seed)


def build_tiny_img2img(directory, seed: int = 0) -> Path:
    """A StableDiffusionImg2ImgPipeline folder (4-channel UNet, VAE factor 2, tiny CLIP text encoder)."""
    return build_tiny_sd_pipeline(directory, "img2img", seed)


def build_tiny_segformer(directory, labels: list[str], seed: int = 0, height: int = 64, width: int = 32) -> Path:
    """A SegformerForSemanticSegmentation + SegformerImageProcessor folder predicting ``labels``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    d = Path(directory)
    torch.manual_seed(seed)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[4, 2], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(d)
    SegformerImageProcessor(size={"height": height, "width": width}).save_pretrained(d)
    return d


CLOTHING_WORDS = ["a", "the", "person", "is", "wearing", "red", "blue", "gray", "black", "white", "green", "shirt", "jeans",
                  "jacket", "skirt", "shoes", "sneakers", "coat", "pants", "and", ",", ".", "1.", "2.", "3.", "-", ":"]


def _word_tokenizer(words: list[str], chat_template: str | None = None):
    """A word-level fast tokenizer over ``words`` plus the special tokens, built locally with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["<unk>", "<pad>", "<s>", "</s>", "<image>", "USER", "ASSISTANT", "[INST]", "[/INST]"] + words
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens=["<image>"])
    if chat_template:
        tok.chat_template = chat_template
    return tok, len(vocab)


def _tiny_llama_config(vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=1, bos_token_id=2, eos_token_id=3)


def _favour_words(model):
    """Push down the special tokens' logits so a random model answers with words, not padding or EOS."""
    import torch

    with torch.no_grad():
        model.lm_head.weight[:9] -= 5.0


def build_tiny_llama_chat(directory, seed: int = 0, words=CLOTHING_WORDS) -> Path:
    """LlamaForCausalLM + a word-level tokenizer with a Llama-2-style [INST] chat template."""
    import torch
    from transformers import LlamaForCausalLM

    d = Path(directory)
    tok, n = _word_tokenizer(list(words), "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_tiny_llama_config(n))
    _favour_words(model)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def build_tiny_llava(directory, seed: int = 0, words=CLOTHING_WORDS) -> Path:
    """LlavaForConditionalGeneration (CLIP vision tower, CLS dropped) + LlavaProcessor; word-level Llama tokenizer."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    d = Path(directory)
    tok, n = _word_tokenizer(list(words) + [w.lower() for w in ("What", "clothes", "?")])
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the vision tower's CLS token, dropped by the "default" strategy
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=16, patch_size=8, projection_dim=16),
        text_config=_tiny_llama_config(n), image_token_index=4, vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    _favour_words(model)
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return d
