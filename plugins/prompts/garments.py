"""Garment, colour and pattern vocabulary shared by the ``templates`` prompts and the ``recolor`` generator."""
from __future__ import annotations

COLOURS = {  # name -> RGB
    "black": (25, 25, 25), "white": (235, 235, 235), "gray": (128, 128, 128), "grey": (128, 128, 128),
    "red": (200, 30, 35), "dark red": (120, 15, 20), "orange": (235, 120, 25), "yellow": (235, 210, 40),
    "green": (40, 150, 60), "olive": (110, 115, 40), "dark green": (20, 80, 35), "blue": (35, 80, 200),
    "navy": (20, 30, 90), "light blue": (130, 175, 230), "teal": (20, 130, 130), "purple": (110, 40, 150),
    "pink": (235, 130, 170), "brown": (110, 70, 35), "beige": (215, 195, 155), "khaki": (190, 170, 110),
    "maroon": (110, 20, 40), "cream": (240, 230, 200),
}
PATTERNS = ("plain", "striped", "checked", "plaid", "dotted", "two-tone")
UPPER = ("t-shirt", "shirt", "sweater", "hoodie", "jacket", "coat", "blouse", "polo shirt", "tank top", "cardigan")
LOWER = ("jeans", "trousers", "shorts", "skirt", "cargo pants", "leggings", "sweatpants")
SHOES = ("sneakers", "boots", "sandals", "loafers", "running shoes", "dress shoes")
REGION_WORDS = {  # words in an item that say which body region it dresses
    "upper": UPPER + ("top", "vest", "dress", "jumper", "pullover", "parka", "blazer", "sweatshirt", "tee", "gown", "suit"),
    "lower": LOWER + ("pants", "slacks", "chinos", "denim"),
    "shoes": SHOES + ("shoes", "shoe", "heels", "trainers", "flats", "slippers", "footwear"),
}


def colour_in(text: str) -> tuple[str, tuple[int, int, int]] | None:
    """The first (longest-matching) colour name in ``text``."""
    t = f" {text.lower()} "
    best = None
    for name in sorted(COLOURS, key=len, reverse=True):
        pos = t.find(f" {name} ")
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, name)
    return (best[1], COLOURS[best[1]]) if best else None


def pattern_in(text: str) -> str:
    t = text.lower()
    for p in PATTERNS:
        if p != "plain" and p in t:
            return p
    return "plain"


def region_of(item: str) -> str | None:
    t = item.lower()
    for region in ("shoes", "lower", "upper"):  # "dress shoes" is footwear, not a dress
        if any(w in t for w in REGION_WORDS[region]):
            return region
    return None
