"""Clothing prompt sources: templates, file, and llava-llama on a tiny LLaVA + tiny Llama loaded by folder."""
import json
import shutil

import numpy as np

import pytest

import reidkit
from reidkit.errors import ReidkitError
from reidkit.generation.bank import ClothingBank, ensure_bank, outfit_groups
from reidkit.plugins.prompts.parsing import cut_words_dlcr, dlcr_items, parse_items, reply_items
from tests.helpers import make_world, run_console
from tests.tiny_models import build_tiny_llama_chat, build_tiny_llava


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("pw") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


def copy_of(world, tmp_path, name="w.h5"):
    shutil.copy(world, tmp_path / name)
    return tmp_path / name


# Llama-2-chat replies of the kinds DLCR's LLM gives (they start with two spaces, as decoded)
REPLY_LIST = "  Sure! Here are the clothing items mentioned in the text:\n\n1. Gray shirt\n2. Blue jeans\n3. Black shoes"
REPLY_COMMAS = "  Sure! The clothing items mentioned in the text are: gray shirt, blue jeans, and black shoes."
REPLY_LIST_AND_SENTENCE = ("  Sure! Here are the clothing items extracted from the text:\n\n1. White, short-sleeved shirt\n"
                           "2. Black pants\n3. Black and white sneakers\n\nI hope this helps! Let me know if you need anything else.")


def test_dlcr_rule_hand_worked_on_llama_replies():
    """DLCR's reference rule, worked by hand: split at a line break + digits + any one character (not a line
    break), drop the first piece, lowercase, delete commas, drop pieces of <= 2 characters (leading space counted)."""
    # "\n\n1." : the first line break is followed by another one (no match there), the second by "1." -> a split
    assert dlcr_items(REPLY_LIST) == ["gray shirt", "blue jeans", "black shoes"]
    # one line: no split at all -> nothing (the empty prompt), although a person reads three items
    assert dlcr_items(REPLY_COMMAS) == []
    # commas inside an item are deleted, not split on; the closing sentence after "\n\n" is an item too, its
    # first letter eaten by the pattern's "any one character" ("\nI")
    assert dlcr_items(REPLY_LIST_AND_SENTENCE) == [
        "white short-sleeved shirt", "black pants", "black and white sneakers",
        "hope this helps! let me know if you need anything else."]
    # bullets split too ("\n*"), multi-digit numbers ("\n10."); " XL" is 3 characters with its space (kept),
    # "XL" after "2." without a space is 2 (dropped); a list without a lead-in loses its first item
    assert dlcr_items("  Sure! Here are the items:\n* Red hoodie\n* Blue jeans") == ["red hoodie", "blue jeans"]
    assert dlcr_items("Items:\n1. XL\n2.XL\n3. Red cap\n10. Scarf") == ["xl", "red cap", "scarf"]
    assert dlcr_items("1. Gray shirt\n2. Blue jeans") == ["blue jeans"]
    assert dlcr_items("Gray shirt, blue jeans") == [] and dlcr_items("") == []
    # no refusal list and no de-duplication in DLCR's rule
    assert dlcr_items("I'm sorry:\n1. Red cap\n2. Red cap") == ["red cap", "red cap"]
    # the rule as a setting: max_item_words (0 = none, DLCR) drops the sentence; the reidkit rule reads commas
    assert reply_items(REPLY_LIST_AND_SENTENCE, "dlcr", 3, 0)[-1].startswith("hope this helps")
    assert reply_items(REPLY_LIST_AND_SENTENCE, "dlcr", 3, 6) == ["white short-sleeved shirt", "black pants",
                                                                  "black and white sneakers"]
    assert reply_items(REPLY_COMMAS, "reidkit", 3, 6) == ["gray shirt", "blue jeans", "black shoes"]
    with pytest.raises(ValueError):
        reply_items(REPLY_LIST, "other")
    # DLCR cuts the joined answers on single spaces: a line break stays inside its word, two spaces make an empty one
    assert cut_words_dlcr("a red\nshirt  and blue jeans", 4) == "a red\nshirt  and"


def test_parse_items_llama_style_replies():  # reidkit's own rule (postprocess=reidkit; also the file source's)
    reply = "Sure! Here are the clothing items mentioned in the text:\n\n1. Gray shirt\n2. Blue jeans,\n3. Black shoes\n* a\n"
    assert parse_items(reply) == ["gray shirt", "blue jeans", "black shoes"]
    assert parse_items("The clothing items are: red hoodie, white sneakers and khaki shorts.") == [
        "red hoodie", "white sneakers", "khaki shorts"]
    assert parse_items("I'm sorry, I cannot see any clothes in this text because it is empty or unclear to me.") == []
    assert parse_items("ok") == []


def test_templates_bank_seeded_one_outfit_per_clothes_key(world, tmp_path):
    a = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "a.h5")), "templates", {"seed": 1}, show_progress=False)
    b = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "b.h5")), "templates", {"seed": 1}, show_progress=False)
    c = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "c.h5")), "templates", {"seed": 2}, show_progress=False)
    store = reidkit.open_store(world)
    assert a.keys == sorted(outfit_groups(store))
    assert {k: a.items(k) for k in a.keys} == {k: b.items(k) for k in b.keys}
    assert sum(a.items(k) != c.items(k) for k in a.keys) > len(a.keys) // 2
    for k in a.keys:
        assert len(a.items(k)) == 3 and a.prompt(k) == ", ".join(a.items(k))


def test_file_bank_json_and_yaml_and_bad_file(world, tmp_path):
    js = tmp_path / "bank.json"
    js.write_text(json.dumps({"summer": ["Red T-shirt", "blue shorts", "ok"], "winter": "grey coat, black boots"}))
    bank = ensure_bank(reidkit.open_store(copy_of(world, tmp_path)), "file", {"path": str(js)}, show_progress=False)
    assert bank.items("summer") == ["red t-shirt", "blue shorts"] and bank.items("winter") == ["grey coat", "black boots"]
    ym = tmp_path / "bank.yaml"
    ym.write_text("- [green hoodie, jeans]\n- [white dress]\n")
    store = copy_of(world, tmp_path, "y.h5")
    proc = run_console("expand", store, "--prompts", "file", "--prompt-set", f"path={ym}", "--variants", "2", "--limit", "2",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    run = reidkit.open_store(store).run("recolor-train-k2-s0")
    assert set(run.column("target_clothes_key")) == {"file-0", "file-1"}
    assert set(run.column("prompt")) == {"green hoodie, jeans", "white dress"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("summer: [1, 2]\n")
    proc = run_console("expand", copy_of(world, tmp_path, "z.h5"), "--prompts", "file", "--prompt-set", f"path={bad}")
    assert proc.returncode == 1 and "must be a list of strings" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return str(build_tiny_llava(root / "llava")), str(build_tiny_llama_chat(root / "llama"))


def test_llava_llama_bank_on_tiny_models(world, tmp_path, tiny_chat):
    vlm, llm = tiny_chat
    settings = {"vlm": vlm, "llm": llm, "vlm_max_new_tokens": 8, "llm_max_new_tokens": 12, "batch_size": 3,
                "question": "What clothes is the person wearing?", "seed": 4}
    bank = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "a.h5")), "llava-llama", settings, device="cpu",
                       show_progress=False)
    store = reidkit.open_store(world)
    assert bank.keys == sorted(outfit_groups(store))  # one entry per outfit of the training split
    for k in bank.keys:
        e = bank.entries[k]
        assert e.raw.startswith("answers: ") and "\nreply: " in e.raw
        answers, reply = e.raw[len("answers: "):].split("\nreply: ")
        assert len(answers.split(" ")) <= 200  # joined answers cut to 200 words
        assert e.items == dlcr_items(reply) and e.ok == bool(e.items)  # DLCR's rule, no fallback (default)
        assert bank.prompt(k) == " ".join(e.items)  # joined with spaces: "" when the reply gave no item
    assert bank.parse_failures == sum(not bank.entries[k].ok for k in bank.keys)
    n_images = sum(len(v) for v in outfit_groups(store).values())
    assert 0 <= bank.counts["truncated_answers"] <= n_images and 0 <= bank.counts["truncated_replies"] <= len(bank.keys)
    assert bank.info["settings"]["question"] == "What clothes is the person wearing?"
    assert bank.info["settings"]["llm_temperature"] == 0.6 and bank.info["settings"]["llm_top_p"] == 0.9
    again = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "b.h5")), "llava-llama", settings, device="cpu",
                        show_progress=False)
    assert {k: again.entries[k].raw for k in again.keys} == {k: bank.entries[k].raw for k in bank.keys}  # seeded
    # kept in the store: a second call reads it back instead of running the models
    assert bank.name.startswith("llava-llama-")  # not the default settings: named by a settings hash
    stored = ClothingBank.read(tmp_path / "a.h5.parts" / "prompts" / bank.name)
    assert {k: stored.items(k) for k in stored.keys} == {k: bank.items(k) for k in bank.keys}
    assert stored.counts == bank.counts and set(stored.counts) == {"truncated_answers", "truncated_replies"}
    # prompt + reply within llm_max_seq_len: 1 leaves no room for any reply, so every reply is cut (and empty)
    short = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "c.h5")), "llava-llama", {**settings, "llm_max_seq_len": 1},
                        device="cpu", show_progress=False)
    assert short.counts["truncated_replies"] == len(short.keys) and short.parse_failures == len(short.keys)
    assert all(short.entries[k].raw.endswith("\nreply: ") and short.prompt(k) == "" for k in short.keys)


def test_llava_llama_expand_end_to_end(world, tmp_path, tiny_chat):
    vlm, llm = tiny_chat
    store = copy_of(world, tmp_path)
    proc = run_console("expand", store, "--prompts", "llava-llama", "--prompt-set",
                       f"vlm={vlm},llm={llm},vlm_max_new_tokens=6,llm_max_new_tokens=10", "--variants", "2", "--limit", "3",
                       "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["generated"] == 6 and "bank_parse_failures" in summary
    assert isinstance(summary["bank_truncated_answers"], int) and isinstance(summary["bank_truncated_replies"], int)
    run = reidkit.open_store(store).run(summary["run"])
    assert run.info["settings"]["prompts"] == "llava-llama" and run.info["settings"]["prompt_settings"]["vlm"] == vlm


def test_new_tokens_cut_at_each_rows_cap():
    import torch

    from reidkit.plugins.prompts.llava_llama import new_tokens

    ids = torch.tensor([[0, 9, 5, 6, 7], [9, 9, 5, 3, 1], [0, 9, 3, 1, 1]])  # prompt of 2, then 3 new tokens; end id 3
    rows, cut = new_tokens(ids, 2, [3, 3, 3], {3})
    assert rows == [[5, 6, 7], [5, 3, 1], [3, 1, 1]] and cut == [True, False, False]
    rows, cut = new_tokens(ids, 2, [2, 1, 0], {3})  # per-row caps (llm_max_seq_len minus each prompt's length)
    assert rows == [[5, 6], [5], []] and cut == [True, True, True]


def fake_models(monkeypatch, replies, answers_cut=(), replies_cut=()):
    """llava-llama with its two models replaced by canned texts: answers, and replies in outfit order."""
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts

    def answer_all(self, images, progress=None):
        return [f"The person is wearing a shirt number {i}." for i in range(len(images))], \
            [i in answers_cut for i in range(len(images))]

    def extract_all(self, texts, progress=None):
        return [replies[i % len(replies)] for i in range(len(texts))], [i in replies_cut for i in range(len(texts))]

    monkeypatch.setattr(LlavaLlamaPrompts, "answer_all", answer_all)
    monkeypatch.setattr(LlavaLlamaPrompts, "extract_all", extract_all)


def test_dlcr_prompt_reaches_the_generator_item(world, tmp_path, monkeypatch):
    from reidkit.generation.engine import make_item

    fake_models(monkeypatch, [REPLY_LIST, REPLY_COMMAS], answers_cut={0, 2}, replies_cut={1})
    store = reidkit.open_store(copy_of(world, tmp_path))
    bank = ensure_bank(store, "llava-llama", {}, show_progress=False)  # the defaults: DLCR
    keys = bank.keys
    assert len(keys) >= 2
    listed, comma = keys[0::2], keys[1::2]
    assert all(bank.items(k) == ["gray shirt", "blue jeans", "black shoes"] and bank.entries[k].ok for k in listed)
    assert all(bank.prompt(k) == "gray shirt blue jeans black shoes" for k in listed)  # DLCR's " ".join
    assert all(bank.items(k) == [] and not bank.entries[k].ok and bank.prompt(k) == "" for k in comma)  # no fallback
    assert bank.parse_failures == len(comma)
    assert bank.counts == {"truncated_answers": 2, "truncated_replies": 1}
    # what a generator receives: the item's prompt is the target outfit's DLCR prompt
    context = {"store": store, "bank": bank, "mask_set": None, "seed": 0, "planned": None}
    index = int(outfit_groups(store)[keys[0]][0])
    for variant in range(4):
        item = make_item(context, (index, variant))
        assert item.prompt == bank.prompt(item.target_key) and item.items == bank.items(item.target_key)
        assert item.prompt in ("gray shirt blue jeans black shoes", "")


def test_reidkit_postprocess_settings(world, tmp_path, monkeypatch):
    fake_models(monkeypatch, [REPLY_LIST_AND_SENTENCE, "I'm sorry, I cannot help with that."])
    settings = {"postprocess": "reidkit", "max_item_words": 6, "separator": "comma", "fallback": "answers"}
    store = reidkit.open_store(copy_of(world, tmp_path))
    bank = ensure_bank(store, "llava-llama", settings, show_progress=False)
    first, second = bank.keys[0], bank.keys[1]
    assert bank.prompt(first) == "white short-sleeved shirt, black pants, black and white sneakers"  # sentence dropped
    # the refusal is a parse failure; fallback=answers: the outfit's joined answers, lowercased, cut to 12 words
    n0, n1 = len(outfit_groups(store)[first]), len(outfit_groups(store)[second])
    answers = " ".join(f"the person is wearing a shirt number {i}." for i in range(n0, n0 + n1))
    assert not bank.entries[second].ok and bank.items(second) == [" ".join(answers.split()[:12])]
    for bad, words in (({"postprocess": "nltk"}, "postprocess"), ({"fallback": "x"}, "fallback"), ({"separator": ""}, "separator")):
        with pytest.raises(ReidkitError, match=words):
            ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "bad.h5")), "llava-llama", bad, show_progress=False)


def test_vlm_images_are_padded_to_a_square_as_llava_1_5():
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts, pad_to_square

    assert LlavaLlamaPrompts.defaults["vlm_image"] == "pad"
    tall = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3)
    fill = (122, 116, 104)  # CLIP's mean x 255, as LLaVA's expand2square
    got = pad_to_square(tall, fill)
    assert got.shape == (4, 4, 3)
    assert np.array_equal(got[:, 1:3], tall)  # centred: (4 - 2) // 2 = 1 column on each side
    assert (got[:, 0] == fill).all() and (got[:, 3] == fill).all()
    wide = tall.transpose(1, 0, 2)
    assert np.array_equal(pad_to_square(wide, fill)[1:3], wide)
    assert pad_to_square(got, fill) is got  # already square: untouched
