"""What a run makes and what each item looks like: phase 5 of ``run_expand`` (reidkit/generation/engine.py).

Two planners behind one interface (:class:`Planner`): the engine's own plan, every usable source image times
every variant with a target outfit from the clothing bank (:class:`ItemPlanner`), and a generator's own work
units when it has ``plan`` (e.g. identities x N images: :class:`GeneratorPlanner`). The engine asks a planner
for the run's keys, lets it build what the pending items need, hands it the mask set and asks it for each item.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.generation import seeding
from reidkit.generation.bank import ensure_bank, outfit_key
from reidkit.generation.contracts import GenerationItem
from reidkit.store.build_once import built_once


def plan_items(store, split: str, variants: int, limit: int | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Source indices (usable images of the split, first ``limit``) and every (index, variant) key."""
    if variants < 1:
        raise ReidkitError(f"--variants must be at least 1, got {variants}")
    idx = store.split(split)
    idx = idx[~store.junk[idx] & ~store.distractor[idx]]
    if limit is not None:
        idx = idx[: int(limit)]
    if len(idx) == 0:
        raise ReidkitError(f"split '{split}' has no usable images to expand")
    return idx, [(int(i), v) for i in idx.tolist() for v in range(variants)]


def make_item(context, key) -> GenerationItem:
    """Everything about one (image, variant), derived from the store and the run seed only."""
    store, bank, mask_set, run_seed = context["store"], context["bank"], context["mask_set"], context["seed"]
    index, variant = key
    if context.get("planned") is not None:  # the generator planned it: its prompt, seed and identity as given
        p = context["planned"][key]
        return GenerationItem(source_index=index, variant=variant, image=store.image(index), mask=None, label_map=None,
                              labels=[], clothing=[], target_key=getattr(p, "target_key", ""), items=[], prompt=p.prompt,
                              seed=int(p.seed), pid=int(p.pid), camera=int(p.camera))
    target = seeding.target_key(run_seed, index, variant, outfit_key(store, index), bank.keys)
    label_map = mask_set.label_map(index) if mask_set is not None else None
    return GenerationItem(
        source_index=index,
        variant=variant,
        image=store.image(index),
        mask=np.isin(label_map, mask_set.clothing_ids) if label_map is not None else None,
        label_map=label_map,
        labels=list(mask_set.labels) if mask_set is not None else [],
        clothing=list(mask_set.clothing) if mask_set is not None else [],
        target_key=target,
        items=list(bank.items(target)),
        prompt=bank.prompt(target),
        seed=seeding.item_seed(run_seed, index, variant),
        pid=int(store.pid[index]),
        camera=int(store.camera[index]),
    )


class Planner:
    """The run's items: ``keys`` (every (source index, variant) in run order), ``prompts`` (the prompt source the
    items read, None when the generator writes its own), ``prepare`` (build what pending items need), ``use_masks``
    and ``item`` (one GenerationItem, from the store and the run seed only)."""

    prompts: str | None = None

    def __init__(self, store, keys, seed: int, planned: dict | None = None):
        self.keys = keys
        self.context = {"store": store, "bank": None, "mask_set": None, "seed": int(seed), "planned": planned}

    def prepare(self, device: str, show_progress: bool) -> None:
        """Build what the pending items need before the models load (nothing, unless a subclass says so)."""

    def use_masks(self, mask_set) -> None:
        self.context["mask_set"] = mask_set

    def item(self, key) -> GenerationItem:
        return make_item(self.context, key)

    def bank_counts(self) -> dict:
        """The clothing bank's counters for the run's summary: outfits whose reply did not parse, and whatever its
        prompt source counted (``counts``, e.g. llava-llama's truncated_answers) as ``bank_NAME`` (none without a bank)."""
        bank = self.context["bank"]
        if bank is None:
            return {"bank_parse_failures": 0}
        return {"bank_parse_failures": bank.parse_failures, **{f"bank_{k}": int(v) for k, v in sorted(bank.counts.items())}}


class ItemPlanner(Planner):
    """The engine's own plan: each item's target outfit is drawn from the clothing bank of ``prompts``."""

    def __init__(self, store, keys, seed: int, prompts: str, prompt_settings: dict, bank_name: str):
        super().__init__(store, keys, seed)
        self.prompts, self.prompt_settings, self.bank_name = prompts, prompt_settings, bank_name

    def prepare(self, device: str, show_progress: bool) -> None:
        store, name = self.context["store"], self.bank_name
        # one rank builds a missing bank while the others wait for it (torchrun/accelerate shards)
        with built_once(store.path, f"bank.{name}", f"the clothing bank '{name}'"):
            self.context["bank"] = ensure_bank(store, self.prompts, self.prompt_settings, device=device,
                                               show_progress=show_progress)


class GeneratorPlanner(Planner):
    """A generator's own work units (its ``plan``): each item's prompt, seed and identity as the generator gave them."""

    def __init__(self, store, planned_items, seed: int):
        planned = {(int(p.source_index), int(p.variant)): p for p in planned_items}
        super().__init__(store, list(planned), seed, planned)


def make_planner(store, gen, plans: bool, source_idx, keys, seed: int, prompts: str, prompt_settings: dict,
                 bank_name: str) -> Planner:
    """The planner for a run: the generator's (``plans``: it has ``plan``) or the engine's own over ``keys``."""
    if plans:  # a generator with its own work units (e.g. identity x N images) lists the run's items
        return GeneratorPlanner(store, gen.plan(store, source_idx, int(seed), seeding.item_seed), seed)
    return ItemPlanner(store, keys, seed, prompts, prompt_settings, bank_name)
