"""Turning a chat model's reply into clothing items.

Two rules, chosen by the llava-llama source's ``postprocess`` setting:

- ``dlcr`` (:func:`dlcr_items`), the rule of DLCR's reference code: the reply
  is split wherever a line break is followed by any digits and then any one
  character other than a line break (the pattern ``\\n[0-9]*.``: "\\n1.",
  "\\n12.", but also "\\n*" or "\\nT" of a sentence on a new line, whose first
  letter is lost), and everything before the first split is dropped (the
  lead-in "Sure! Here are the clothing items ...:"). Each piece is lowercased,
  its commas are removed (not replaced), and pieces of at most 2 characters
  (counted as split, with their leading space) are dropped. No refusal
  check, no de-duplication, no length limit: a sentence after the list is an
  item too. A reply with no such line break (one line, commas only) gives no
  items.
- ``reidkit`` (:func:`parse_items`), reidkit's own rule: one item per line, or
  the comma / "and" separated parts of a one-line reply; list marks, lead-ins
  ending with ":" and refusals removed, duplicates dropped.
"""
from __future__ import annotations

import re

LIST_MARK = re.compile(r"^\s*(?:\d+\s*[.)]|[-*\u2022])\s*")
MAX_ITEM_WORDS = 6  # reidkit rule's default: longer lines are sentences around the list, not items
REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai")
DLCR_SPLIT = re.compile(r"\n[0-9]*.")  # '.' is any character but a line break, as in the reference
RULES = ("dlcr", "reidkit")


def dlcr_items(reply: str, min_chars: int = 3) -> list[str]:
    """DLCR's items of a reply (see the module docstring); [] when it has no line-break split.

    The length test is DLCR's, on the piece as split (lowercased, commas removed, leading space
    included); the kept item is stored with its whitespace collapsed (CLIP's tokenizer collapses
    whitespace first, so the joined prompt reads the same). Whitespace-only pieces are dropped."""
    items = []
    for piece in DLCR_SPLIT.split(reply)[1:]:
        piece = piece.lower().replace(",", "")
        item = " ".join(piece.split())
        if len(piece) >= min_chars and item:
            items.append(item)
    return items


def parse_items(reply: str, min_chars: int = 3, max_words: int = MAX_ITEM_WORDS) -> list[str]:
    """reidkit's rule: items from a reply such as 'Sure! Here are the items:\\n1. Gray shirt\\n2. Blue jeans'
    (one per line, or comma-separated when the reply is one line); items longer than ``max_words``
    words are dropped (0: no limit); [] when nothing parses."""
    if any(r in reply.lower() for r in REFUSALS):
        return []
    lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.endswith(":")]  # lead-ins like 'Here are the clothing items:'
    if len(lines) == 1:
        text = lines[0].split(":", 1)[1] if ":" in lines[0] else lines[0]
        lines = re.split(r"[,;]|\band\b", text)
    items = []
    for ln in lines:
        item = LIST_MARK.sub("", ln).lower().replace(",", " ")
        item = " ".join(item.strip(" .!*\"'").split())
        if len(item) >= min_chars and (max_words <= 0 or len(item.split()) <= max_words) and item not in items:
            items.append(item)
    return items


def reply_items(reply: str, rule: str = "dlcr", min_chars: int = 3, max_item_words: int = 0) -> list[str]:
    """The items of a chat model's reply under ``rule`` (``dlcr`` or ``reidkit``); items longer than
    ``max_item_words`` words are dropped (0: no limit, as in DLCR)."""
    if rule == "reidkit":
        return parse_items(reply, min_chars, max_item_words)
    if rule != "dlcr":
        raise ValueError(f"unknown reply rule '{rule}' (known: {', '.join(RULES)})")
    items = dlcr_items(reply, min_chars)
    return [it for it in items if len(it.split()) <= max_item_words] if max_item_words > 0 else items


def cut_words(text: str, max_words: int) -> str:
    """The first ``max_words`` whitespace-separated words."""
    words = text.split()
    return " ".join(words[:max_words])


def cut_words_dlcr(text: str, max_words: int) -> str:
    """DLCR's cut of the joined answers: split on single spaces (a line break stays inside its word, two
    spaces make an empty word), keep the first ``max_words``, join them with single spaces."""
    return " ".join(text.split(" ")[:max_words])
