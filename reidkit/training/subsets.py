"""Small-scale and few-shot training as LUPerson defines them (``--subset``), for every strategy.

- ``ids=r``: a seeded ``int(#persons x r)`` of the training persons, with all their images (LUPerson's
  ``split_mode id``, "small-scale");
- ``images=r``: every person, with a seeded ``max(round(n x r), 1)`` of its ``n`` images (``split_mode im``,
  "few-shot"; Python's round, half to even).

Only the training split is cut; query and gallery stay whole. The choice is drawn from the run's seed (its own
stream, so it does not move any other draw) and the run records ``subset`` with its seed.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError

MODES = ("ids", "images")
STREAM = 0x5B5E7  # the subset's own random stream under the run seed


def parse_subset(text) -> tuple[str, float] | None:
    """``"ids=0.1"`` -> ("ids", 0.1); None or "" -> None; anything else is one line saying what is expected."""
    if text in (None, ""):
        return None
    mode, sep, value = str(text).partition("=")
    try:
        ratio = float(value)
    except ValueError:
        ratio = None
    if not sep or mode.strip() not in MODES or ratio is None or not 0 < ratio <= 1:
        raise ReidkitError(f"subset {text!r}: expected ids=R or images=R with 0 < R <= 1 (e.g. ids=0.1)")
    return mode.strip(), ratio


def select(indices: np.ndarray, pids: np.ndarray, subset, seed: int) -> np.ndarray:
    """The kept store ``indices`` (in their order) of the images with person ids ``pids``, for ``subset``."""
    parsed = parse_subset(subset)
    if parsed is None:
        return indices
    mode, ratio = parsed
    rng = np.random.default_rng([int(seed), STREAM])
    persons = np.unique(pids)
    if mode == "ids":
        chosen = rng.choice(persons, int(len(persons) * ratio), replace=False)
        keep = np.isin(pids, chosen)
    else:
        keep = np.zeros(len(indices), bool)
        for person in persons:
            members = np.flatnonzero(pids == person)
            keep[rng.choice(members, max(round(len(members) * ratio), 1), replace=False)] = True
    kept_persons = len(np.unique(pids[keep]))
    if kept_persons < 2:
        raise ReidkitError(f"subset {subset} keeps {kept_persons} of the {len(persons)} training persons; training needs "
                           "at least two (raise the share)")
    return indices[keep]
