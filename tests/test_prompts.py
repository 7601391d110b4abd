"""Clothing prompt sources: templates, file, and llava-llama on a tiny LLaVA + tiny Llama loaded by folder."""
import json
import shutil

import pytest

import reidkit
from reidkit.generation.bank import ClothingBank, ensure_bank, outfit_groups
from reidkit.plugins.prompts.parsing import parse_items
from tests.helpers import make_world, run_console
from tests.tiny_models import build_tiny_llama_chat, build_tiny_llava


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("pw") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


def copy_of(world, tmp_path, name="w.h5"):
    shutil.copy(world, tmp_path / name)
    return tmp_path / name


def test_parse_items_llama_style_replies():
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
        assert e.items and all(i == i.lower() and "," not in i and len(i) >= 3 for i in e.items)
        assert e.raw.startswith("answers: ") and "\nreply: " in e.raw
        assert len(e.raw.split("\nreply: ")[0].split()) <= 201  # joined answers cut to 200 words
    assert bank.parse_failures == sum(not bank.entries[k].ok for k in bank.keys)
    assert bank.info["settings"]["question"] == "What clothes is the person wearing?"
    assert bank.info["settings"]["llm_temperature"] == 0.6 and bank.info["settings"]["llm_top_p"] == 0.9
    again = ensure_bank(reidkit.open_store(copy_of(world, tmp_path, "b.h5")), "llava-llama", settings, device="cpu",
                        show_progress=False)
    assert {k: again.entries[k].raw for k in again.keys} == {k: bank.entries[k].raw for k in bank.keys}  # seeded
    # kept in the store: a second call reads it back instead of running the models
    assert bank.name.startswith("llava-llama-")  # not the default settings: named by a settings hash
    stored = ClothingBank.read(tmp_path / "a.h5.parts" / "prompts" / bank.name)
    assert {k: stored.items(k) for k in stored.keys} == {k: bank.items(k) for k in bank.keys}


def test_llava_llama_expand_end_to_end(world, tmp_path, tiny_chat):
    vlm, llm = tiny_chat
    store = copy_of(world, tmp_path)
    proc = run_console("expand", store, "--prompts", "llava-llama", "--prompt-set",
                       f"vlm={vlm},llm={llm},vlm_max_new_tokens=6,llm_max_new_tokens=10", "--variants", "2", "--limit", "3",
                       "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["generated"] == 6 and "bank_parse_failures" in summary
    run = reidkit.open_store(store).run(summary["run"])
    assert run.info["settings"]["prompts"] == "llava-llama" and run.info["settings"]["prompt_settings"]["vlm"] == vlm
