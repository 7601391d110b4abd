"""Turning a chat model's reply into clothing items (DLCR's rule: lowercase, no commas, items > 2 characters)."""
from __future__ import annotations

import re

LIST_MARK = re.compile(r"^\s*(?:\d+\s*[.)]|[-*\u2022])\s*")
MAX_ITEM_WORDS = 6  # longer lines are sentences around the list, not items
REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai")


def parse_items(reply: str, min_chars: int = 3) -> list[str]:
    """Items from a reply such as 'Sure! Here are the items:\\n1. Gray shirt\\n2. Blue jeans' (one per line,
    or comma-separated when the reply is one line); [] when nothing parses."""
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
        if len(item) >= min_chars and len(item.split()) <= MAX_ITEM_WORDS and item not in items:
            items.append(item)
    return items


def cut_words(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words])
