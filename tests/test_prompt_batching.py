"""llava-llama's sampling is per item: a seed gives the same answers and replies whatever the batch holds
(tiny LLaVA + tiny Llama built from configs and loaded by folder; nothing downloads)."""
import importlib.util
import math

import numpy as np
import pytest

from reidkit.errors import PluginError
from tests.tiny_models import build_tiny_llama_chat, build_tiny_llava

SAMPLED = {"vlm_temperature": 1.0, "llm_temperature": 1.0, "llm_top_p": 0.9, "vlm_max_new_tokens": 8, "llm_max_new_tokens": 10}
TEXTS = ["red shirt", "the person is wearing blue jeans and a black jacket", "white shoes",
         "gray coat and green pants , sneakers", "a skirt"]  # different lengths: left padding differs per batch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    return str(build_tiny_llava(root / "llava")), str(build_tiny_llama_chat(root / "llama"))


def images(seed, n=5):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (32, 16, 3), dtype=np.uint8) for _ in range(n)]


def prompts(tiny, **settings):
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts

    vlm, llm = tiny
    return LlavaLlamaPrompts({"vlm": vlm, "llm": llm, **SAMPLED, **settings}, "cpu")


def run_both(tiny, ims, texts, **settings):
    p = prompts(tiny, **settings)
    return p.answer_all(ims), p.extract_all(texts)


def test_same_seed_same_answers_and_replies_whatever_the_batch_size(tiny):
    ims = images(0)
    runs = [run_both(tiny, ims, TEXTS, seed=3, batch_size=bs) for bs in (1, 2, 3)]
    assert runs[1] == runs[0] and runs[2] == runs[0]  # answers, replies and their cut flags
    # the check can fail: these inputs are sampled, another seed gives other answers and replies
    (answers, _), (replies, _) = runs[0]
    (answers_other, _), (replies_other, _) = run_both(tiny, ims, TEXTS, seed=4, batch_size=2)
    assert answers_other != answers and replies_other != replies


def test_same_seed_same_output_whichever_items_share_the_batch(tiny):
    ims, others = images(0, 3), images(1, 3)
    (answers, _), (replies, _) = run_both(tiny, ims, TEXTS[:3], seed=3, batch_size=3)
    # item 1 beside other images, and beside other outfits: the longest first, its own left padding now 3 tokens
    mixed_texts = ["jeans", TEXTS[1], "the person is wearing a white coat , gray pants and black sneakers"]
    (answers_mixed, _), (replies_mixed, _) = run_both(tiny, [others[0], ims[1], others[2]], mixed_texts, seed=3, batch_size=3)
    assert answers_mixed[1] == answers[1] and replies_mixed[1] == replies[1]


def test_each_row_draws_from_its_items_own_generator_only():
    import torch

    from reidkit.plugins.prompts.llava_llama import ItemSampler

    torch.manual_seed(0)
    scores = [torch.randn(3, 12) for _ in range(6)]  # six steps of a batch of items 4, 5, 6
    batch, alone = ItemSampler(7, 1, [4, 5, 6], 1.0, top_p=0.9), ItemSampler(7, 1, [5], 1.0, top_p=0.9)
    drawn = []
    for s in scores:
        together, by_itself = batch(None, s), alone(None, s[1:2])
        assert torch.equal(together[1:2], by_itself)  # item 5: the same token beside items 4 and 6 as alone
        assert (together == 0).sum(1).tolist() == [1, 1, 1] and torch.isinf(together).sum(1).tolist() == [11, 11, 11]
        drawn.append(int(by_itself.argmax()))
    assert len(set(drawn)) > 1  # sampled, not one token over and over
    torch.manual_seed(123)  # the global RNG plays no part
    again = ItemSampler(7, 1, [5], 1.0, top_p=0.9)
    assert [int(again(None, s[1:2]).argmax()) for s in scores] == drawn

def test_top_p_and_temperature_hand_worked():
    import torch

    from reidkit.plugins.prompts.llava_llama import item_generator, sample_row, top_p_keep

    # token ids 0..3 with probabilities 0.15, 0.5, 0.05, 0.3 (not in order: the kept set is mapped back to ids)
    logits = torch.log(torch.tensor([0.15, 0.5, 0.05, 0.3]))
    # temperature 1, top-p 0.6: by probability 0.5 (before it 0), 0.3 (before 0.5 < 0.6), 0.15 (before 0.8): ids 1, 3
    assert top_p_keep(torch.softmax(logits, -1), 0.6).tolist() == [False, True, False, True]
    assert top_p_keep(torch.softmax(logits, -1), 0.85).tolist() == [True, True, False, True]  # before 0.95 >= 0.85
    assert top_p_keep(torch.softmax(logits, -1), 0.3).tolist() == [False, True, False, False]
    assert top_p_keep(torch.softmax(logits, -1), 1.0).all()
    gen = item_generator(11, "cpu")
    drawn = {sample_row(logits, gen, 1.0, top_p=0.6) for _ in range(200)}
    assert drawn == {1, 3}  # only the survivors, and both of them
    # temperature 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 over 0.365 -> 0.685 for id 1, so
    # top-p 0.6 keeps id 1 alone (0.685 reaches 0.6): every draw is id 1
    assert math.isclose(float(torch.softmax(logits / 0.5, -1)[1]), 0.25 / 0.365, rel_tol=1e-5)
    assert {sample_row(logits, gen, 0.5, top_p=0.6) for _ in range(200)} == {1}
    assert {sample_row(logits, gen, 1.0, top_p=0.3) for _ in range(200)} == {1}  # one survivor at temperature 1 too
    assert {sample_row(logits, gen, 1.0, top_k=2) for _ in range(200)} == {1, 3}  # top-k: the two most probable
    # top-p 0.9: ids 1, 3, 0 (0.15: before it 0.8 < 0.9); id 2 (before it 0.95) is out
    assert {sample_row(logits, gen, 1.0, top_p=0.9) for _ in range(300)} == {0, 1, 3}
    g1, g2 = item_generator(5, "cpu"), item_generator(5, "cpu")  # a fixed generator gives a fixed sequence
    assert [sample_row(logits, g1, 1.0, top_p=0.9) for _ in range(20)] == [sample_row(logits, g2, 1.0, top_p=0.9) for _ in range(20)]


def test_temperature_zero_is_the_argmax(tiny):
    import torch

    from reidkit.plugins.prompts.llava_llama import ItemSampler, item_generator, sample_row

    logits = torch.tensor([0.1, 2.0, -1.0, 1.9])
    gen = item_generator(2, "cpu")
    state = gen.get_state()
    assert sample_row(logits, gen, 0.0, top_p=0.5) == 1 and torch.equal(gen.get_state(), state)  # no draw
    out = ItemSampler(0, 0, [0, 1], 0.0)(None, torch.stack([logits, -logits]))
    assert out.argmax(1).tolist() == [1, 2] and torch.isinf(out).sum().item() == 6
    ims = images(0, 3)
    greedy = [run_both(tiny, ims, TEXTS[:3], seed=s, batch_size=bs, vlm_temperature=0.0, llm_temperature=0.0)
              for s, bs in ((0, 1), (5, 3))]
    assert greedy[0] == greedy[1]  # no randomness at all: any seed, any batch


def test_attn_implementation_reaches_both_models_and_bad_values_are_refused(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts

    assert LlavaLlamaPrompts.defaults["attn_implementation"] == "auto"
    assert LlavaLlamaPrompts.settings_spec["attn_implementation"].choices == ("auto", "eager", "sdpa", "flash_attention_2")
    p = prompts(tiny, attn_implementation="eager")
    assert p._model("llm", AutoModelForCausalLM, torch.float32).config._attn_implementation == "eager"
    assert p._model("vlm", AutoModelForImageTextToText, torch.float32).config._attn_implementation == "eager"
    auto = prompts(tiny)._model("llm", AutoModelForCausalLM, torch.float32).config._attn_implementation
    assert auto in ("sdpa", "eager")  # auto: transformers' choice
    with pytest.raises(PluginError, match="attn_implementation must be one of auto, eager, sdpa, flash_attention_2") as exc:
        prompts(tiny, attn_implementation="fast")
    assert "\n" not in str(exc.value)
    if importlib.util.find_spec("flash_attn") is None:  # a known kernel that cannot run here: one line, no traceback
        with pytest.raises(PluginError, match="attn_implementation=flash_attention_2 cannot be used") as exc:
            prompts(tiny, attn_implementation="flash_attention_2")._model("llm", AutoModelForCausalLM, torch.float32)
        assert "\n" not in str(exc.value)
