"""The expansion engine: plan a run's items, generate them in batches, filter, publish chunks.

It knows no model: maskers, prompt sources, generators and filters are
plugins looked up by name. Every item (source image, variant) has its own
seed and target outfit derived from the run seed, so batching, sharding and
resuming never change what an item looks like.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.contracts import CONTRACTS, Setting, check_value
from reidkit.errors import ReidkitError
from reidkit.generation import seeding
from reidkit.generation.bank import bank_exists
from reidkit.generation.contracts import (
    GenerationItem,
    Verdict,
    parse_plugin_spec,
    resolve_settings,
)
from reidkit.devices import check_device
from reidkit.generation.masking import ensure_masks, mask_set_name, masker_plugin
from reidkit.generation.parts import open_part, settings_name
from reidkit.generation.planning import Planner, make_item, make_planner, plan_items  # noqa: F401 (make_item: a public name here)
from reidkit.store import chunks, open_store
from reidkit.store.imagecodec import encode_png
from reidkit.store.lock import one_writer_per_run_shard
from reidkit.store.runs import KIND as RUN_KIND
from reidkit.store.runs import GeneratedRun

# the optional members each kind may have, with what the engine assumes when a plugin leaves one out
GENERATOR, PROMPTS, MASKER, FILTER = (CONTRACTS[k] for k in ("generators", "prompt_sources", "maskers", "filters"))

# part.json keys that must agree for a rerun (or another shard) to add to an existing run
MATCHED = ("settings",)


def _plugin(kind, label, name, overrides):
    from reidkit.plugin_manager import get_plugins

    cls = get_plugins().get(kind, name)
    return cls, resolve_settings(label, name, cls, overrides)



def default_run_name(generator: str, split: str, variants: int, seed: int) -> str:
    return f"{generator}-{split}-k{variants}-s{seed}"


# run_expand's own settings as a config file or $REIDKIT_CONFIG gives them (flags are typed by click); shard
# is "I/N" there (a library caller may pass (I, N)), filters a list of "NAME[:k=v]" or {name: NAME, k: v}
RUN_SETTINGS = {
    "generator": Setting(str), "prompts": Setting(str, nullable=True), "masker": Setting(str, nullable=True),
    "variants": Setting(int, min=1), "seed": Setting(int, min=0), "name": Setting(str, nullable=True),
    "split": Setting(str), "batch_size": Setting(int, min=1, nullable=True), "chunk_size": Setting(int, min=1),
    "shard": Setting(str, nullable=True), "filters": Setting(list, nullable=True),
    "generator_settings": Setting(dict, nullable=True), "prompt_settings": Setting(dict, nullable=True),
    "masker_settings": Setting(dict, nullable=True), "device": Setting(str, nullable=True),
    "limit": Setting(int, min=1, nullable=True),
}


def check_run_settings(settings: dict, where: str) -> None:
    """Each of ``settings`` that is a run_expand setting checked for type and range: one line naming it and ``where``."""
    for key, value in settings.items():
        if key == "shard" and isinstance(value, (tuple, list)):  # the library's (I, N); parse_shard checks it
            continue
        check_value(where, key, RUN_SETTINGS.get(key), value)


# what --masker / --prompts are when neither the user nor the generator names one
FALLBACK_MASKER, FALLBACK_PROMPTS = "store", "templates"


def plugin_choice(given: str | None, gen_cls, generator: str, attribute: str, fallback: str) -> tuple[str, str]:
    """(plugin name, where it came from): the user's, else the generator's ``default_masker`` / ``default_prompts``, else ``fallback``."""
    if given:
        return given, "given"
    declared = GENERATOR.optional_member(gen_cls, attribute)
    if declared:
        return str(declared), f"{generator}'s default"
    return fallback, "default"



def run_pass_rates(run_dir, store, filter_specs, device) -> dict:
    """Each reporting filter's pass rates over every published item of the run (all shards, all sessions)."""
    reporting = [(fname, fcls, fs) for fname, fcls, fs in filter_specs if FILTER.has(fcls, "pass_rates")]
    run = GeneratedRun(run_dir, store)
    if not reporting or not run.files:
        return {}
    stored = [json.loads(s or "{}") for s in run.column("scores")]
    rates = {}
    for fname, fcls, fsettings in reporting:
        prefix = fname + "."
        own = [{k[len(prefix):]: v for k, v in sc.items() if k.startswith(prefix)} for sc in stored]
        rates[fname] = fcls(fsettings, device, store).pass_rates(own)  # constructors load nothing
    return rates


DEFAULT_GROUP_SIZE = 8  # images per generator call unless the run or the user says otherwise


def group_size(asked: int | None, recorded: dict, run_name: str) -> int:
    """Images per generator call: the run's recorded group size (fixed at its creation), else ``asked``, else 8."""
    fixed = recorded.get("group_size")
    if asked is None:
        return int(fixed or DEFAULT_GROUP_SIZE)
    if fixed is not None and int(asked) != int(fixed):
        raise ReidkitError(f"run '{run_name}' is made in groups of {fixed} images; expected --batch-size {fixed} "
                           f"(or none), got {asked}: a different size would change the bytes of its images")
    return int(asked)


def _digest(data: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=lambda o: f"<{type(o).__name__}>"))


def run_expand(store_path, *, generator: str = "recolor", prompts: str | None = None, masker: str | None = None,
               variants: int = 10, seed: int = 0, name: str | None = None, split: str = "train",
               batch_size: int | None = None, chunk_size: int = 64, shard=None, filters=(),
               generator_settings: dict | None = None, prompt_settings: dict | None = None,
               masker_settings: dict | None = None, device: str | None = "auto", limit: int | None = None,
               show_progress: bool = True, filter_objects: dict | None = None) -> dict:
    """Generate (or finish) a run of ``variants`` images per usable image of ``split``; return a summary.

    Arguments mirror ``reidkit expand`` flags: ``generator`` / ``prompts`` /
    ``masker`` are plugin names with their ``*_settings`` overrides (``prompts``
    / ``masker`` None: the generator's ``default_prompts`` / ``default_masker``
    when it declares them, else ``templates`` / ``store``);
    ``filters`` is a list of ``"NAME"``, ``"NAME:k=v,..."`` or
    ``{"name": NAME, k: v}``; ``shard`` is ``(I, N)`` or ``"I/N"`` (None:
    the launcher's rank when RANK/WORLD_SIZE are set, else everything);
    ``limit`` keeps the first N source images; ``filter_objects`` maps a
    filter name to extra constructor-free objects a library caller hands in
    (e.g. ``{"reid-confidence": {"model": obj}}``). Rerunning with the same
    settings resumes; other settings under the same name are refused.

    Returns a dict: run, path, planned, skipped (already done), generated,
    kept, rejected, reject_reasons, seconds, images_per_s, shard, pass_rates,
    generator, masker and prompts (the plugins used; None where the generator
    needs none) and chosen_by (for masker and prompts: "given", "default",
    or "GENERATOR's default").

    The phases, each a function below: (1) resolve plugins, (2) preflight every
    plugin's ``check(store)``, (3) open the run (under its shard's writer lock, taken
    once the run's name is final), (4) pending groups, (5) plan the items (one
    :class:`~reidkit.generation.planning.Planner` for both modes), (6) produce,
    (7) summarise.
    """
    check_run_settings({"generator": generator, "prompts": prompts, "masker": masker, "variants": variants, "seed": seed,
                        "name": name, "split": split, "batch_size": batch_size, "chunk_size": chunk_size,
                        "filters": list(filters) if isinstance(filters, tuple) else filters, "limit": limit,
                        "generator_settings": generator_settings, "prompt_settings": prompt_settings,
                        "masker_settings": masker_settings}, "expand")
    check_device(device)  # before any model loads or anything is written
    store, dev = open_store(store_path), device or "auto"
    shard = run_shard(shard)
    plugins = resolve_plugins(generator, prompts, masker, filters, generator_settings, prompt_settings,
                              masker_settings)  # 1
    source_idx, keys = plan_items(store, split, variants, limit)
    gen, filter_instances = preflight(store, plugins, dev, filter_objects)  # 2
    run_name, provenance = final_run_name(name, plugins, split, variants, seed)
    run_dir = chunks.part_dir(store, RUN_KIND, run_name)  # a name the store refuses: refused before its lock file
    # two expands of one run shard never interleave (a guided and a plain dlcr run differ by the provenance digest)
    with one_writer_per_run_shard(getattr(store_path, "path", store_path), run_name, seeding.shard_tag(shard)):  # 3
        planner = make_planner(store, gen, plugins.plans, source_idx, keys, seed, plugins.prompts,
                               plugins.src_settings, plugins.bank)  # 5, before 3's record: it counts the items
        info = run_info(plugins, provenance, variants, seed, split, limit, len(planner.keys))
        run = open_run(store, run_name, run_dir, info, batch_size)  # 3
        groups, mine, todo, done = pending_groups(planner.keys, run, shard)  # 4
        summary = new_summary(run, mine, todo, shard, plugins, planner)
        if not todo:
            run.publish()  # nothing left to make (or nothing planned): the run is what it is
            summary["pass_rates"] = run_pass_rates(run_dir, store, plugins.filter_specs, dev)
            return summary
        produce(store, plugins, planner, gen, filter_instances, run, groups, done, todo, summary,
                dev=dev, chunk_size=chunk_size, tag=seeding.shard_tag(shard), show_progress=show_progress)  # 6
        return summarise(summary, store, run, plugins, planner, dev)  # 7


def run_shard(shard):
    """``shard`` as (I, N), or None for everything: "I/N" parsed; None means the launcher's rank, if any."""
    shard = seeding.parse_shard(shard) if isinstance(shard, str) else shard
    return seeding.launcher_shard() if shard is None else shard


@dataclass
class Plugins:
    """Phase 1's result: every plugin class the run uses, its resolved settings, and where its name came from."""

    generator: str
    gen_cls: type
    gen_settings: dict
    prompts: str
    prompts_from: str
    src_cls: type
    src_settings: dict
    masker: str
    masker_from: str
    needs_masks: bool
    mask_cls: type | None
    mask_settings: dict
    filter_specs: list  # (name, class, settings) per filter, in the order given

    @property
    def plans(self) -> bool:
        """Whether the generator lists the run's items itself (its ``plan``)."""
        return GENERATOR.has(self.gen_cls, "plan")

    @property
    def bank(self) -> str:
        """The clothing bank's part name: the prompt source with its settings."""
        return settings_name(self.prompts, self.src_settings, dict(getattr(self.src_cls, "defaults", {})))


def resolve_plugins(generator, prompts, masker, filters, generator_settings, prompt_settings, masker_settings) -> Plugins:
    """Phase 1: look every plugin up by name and resolve its settings (an unknown name or setting: one line)."""
    gen_cls, gen_settings = _plugin("generators", "generator", generator, generator_settings)
    prompts, prompts_from = plugin_choice(prompts, gen_cls, generator, "default_prompts", FALLBACK_PROMPTS)
    masker, masker_from = plugin_choice(masker, gen_cls, generator, "default_masker", FALLBACK_MASKER)
    src_cls, src_settings = _plugin("prompt_sources", "prompt source", prompts, prompt_settings)
    filter_specs = []
    for spec in filters or ():
        fname, fover = parse_plugin_spec(spec, "--filter")
        fcls, fsettings = _plugin("filters", "filter", fname, fover)
        filter_specs.append((fname, fcls, fsettings))
    needs_masks = bool(GENERATOR.optional_member(gen_cls, "needs_masks"))
    mask_cls, mask_settings = masker_plugin(masker, masker_settings) if needs_masks else (None, {})
    return Plugins(generator, gen_cls, gen_settings, prompts, prompts_from, src_cls, src_settings, masker, masker_from,
                   needs_masks, mask_cls, mask_settings, filter_specs)


def preflight(store, p: Plugins, dev: str, filter_objects: dict | None):
    """Phase 2: each plugin's own look at its input (a missing file, mask set or checkpoint), before anything is
    written. Returns (the generator when it had to be made for its check or plan, else None; the filters)."""
    gen = None
    if GENERATOR.has(p.gen_cls, "check") or p.plans:
        gen = p.gen_cls(p.gen_settings, dev)
        GENERATOR.optional_member(gen, "check")(store)
    filter_instances = []
    for fname, fcls, fsettings in p.filter_specs:
        f = fcls(fsettings, dev, store)  # constructors load nothing
        for attr, obj in ((filter_objects or {}).get(fname) or {}).items():
            setattr(f, attr, obj)
        FILTER.optional_member(f, "check")(store)
        filter_instances.append((fname, f))
    if p.needs_masks and MASKER.has(p.mask_cls, "check"):
        MASKER.optional_member(p.mask_cls(p.mask_settings, dev), "check")(store)
    if not p.plans and PROMPTS.has(p.src_cls, "check") and not bank_exists(store, p.prompts, p.src_settings):
        PROMPTS.optional_member(p.src_cls(p.src_settings, dev), "check")(store)
    return gen, filter_instances


def final_run_name(name: str | None, p: Plugins, split: str, variants: int, seed: int) -> tuple[str, dict]:
    """(the run's name, the generator's provenance): ``name``, else the default name, with a hash of the provenance
    when the generator records more than its settings (dlcr: a discriminator's sha256)."""
    provenance = GENERATOR.optional_member(p.gen_cls, "provenance")(p.gen_settings)
    return name or default_run_name(p.generator, split, variants, seed) + (f"-{_digest(provenance)}" if provenance else ""), provenance


def run_info(p: Plugins, provenance: dict, variants: int, seed: int, split: str, limit, items_planned: int) -> dict:
    """The run's part.json: what it was made with (``settings``: a rerun's or another shard's must agree)."""
    recorded = {
        "generator": p.generator,
        "generator_settings": p.gen_settings,
        "model_id": p.gen_settings.get("model"),
        "prompts": p.prompts,
        "prompt_settings": p.src_settings,
        "masker": p.masker if p.needs_masks else None,
        "masker_settings": p.mask_settings,
        "mask_set": mask_set_name(p.masker, p.mask_settings) if p.needs_masks else None,
        "bank": p.bank,
        "variants": int(variants),
        "seed": int(seed),
        "split": split,
        "limit": limit,
        "filters": [{"name": f, "settings": _jsonable(s)} for f, _, s in p.filter_specs],
    }
    if provenance:  # only then: plain runs keep the record (and so the resume check) they always had
        recorded["generator_provenance"] = _jsonable(provenance)
    return {
        "generator": p.generator,
        "model_id": p.gen_settings.get("model"),
        "seed": int(seed),
        "variants": int(variants),
        "split": split,
        "settings": recorded,
        "reidkit_version": __version__,
        "items_planned": items_planned,
        "seed_rule": "item seed = SeedSequence([run seed, 0, source index, variant]); target = "
                     "permutation SeedSequence([run seed, 1, source index]) of the bank minus the own outfit, variant-th",
    }


@dataclass
class OpenedRun:
    """Phase 3's result: the run's folder, its part.json (``info``), whether it existed, and its group size."""

    store: object
    name: str
    dir: Path
    info: dict
    existing: bool = False
    made: GeneratedRun | None = None
    group_size: int = DEFAULT_GROUP_SIZE

    def publish(self):  # the run's part.json: a rerun's or another shard's settings must agree with it
        return open_part(self.store, RUN_KIND, self.name, self.info, must_match=MATCHED)


def open_run(store, run_name: str, run_dir, info: dict, asked_group_size: int | None) -> OpenedRun:
    """Phase 3: an existing run is checked now (other settings are refused before any work); a new one is created
    with its first chunk, so a model that fails to load (or a first batch that fails) leaves no empty run behind."""
    run = OpenedRun(store, run_name, run_dir, info, existing=(run_dir / "part.json").is_file())
    if run.existing:
        run.publish()
        run.made = GeneratedRun(run_dir, store)
    run.group_size = group_size(asked_group_size, run.made.info if run.made else {}, run_name)
    info["group_size"] = run.group_size  # recorded at creation: every shard and resume forms the same groups
    return run


def pending_groups(keys, run: OpenedRun, shard):
    """Phase 4: (this shard's groups, their keys, the keys not made yet, the keys made already)."""
    done = run.made.done_keys() if run.made else set()
    groups = seeding.shard_groups(seeding.item_groups(keys, run.group_size), shard)
    mine = [k for g in groups for k in g]
    return groups, mine, [k for k in mine if k not in done], done


def new_summary(run: OpenedRun, mine, todo, shard, p: Plugins, planner: Planner) -> dict:
    return {"run": run.name, "path": str(run.dir), "planned": len(mine), "skipped": len(mine) - len(todo),
            "generated": 0, "kept": 0, "rejected": 0, "reject_reasons": {}, "seconds": 0.0, "images_per_s": 0.0,
            "shard": f"{shard[0]}/{shard[1]}" if shard else "all", "pass_rates": {},
            "generator": p.generator, "masker": p.masker if p.needs_masks else None, "prompts": planner.prompts,
            "chosen_by": {"masker": p.masker_from, "prompts": p.prompts_from}}


def produce(store, p: Plugins, planner: Planner, gen, filter_instances, run: OpenedRun, groups, done, todo,
            summary: dict, *, dev: str, chunk_size: int, tag: str, show_progress: bool) -> None:
    """Phase 6: the pending items' masks and bank, the models, then every group generated, judged and published."""
    prepare_inputs(store, p, planner, todo, run.group_size, tag, dev, show_progress)
    gen = gen or p.gen_cls(p.gen_settings, dev)
    GENERATOR.optional_member(gen, "load")()  # model loading is not generation time (and fails before any progress bar)
    for _, f in filter_instances:
        FILTER.optional_member(f, "load")()  # models load before timing starts
    made_by = {"shard": summary["shard"], "device": str(getattr(gen, "device", dev)), "batch_size": int(run.group_size),
               "reidkit_version": __version__}
    made_by.update(GENERATOR.optional_member(gen, "weights") or {})  # e.g. the hub revision and commit the weights came from
    writer = _ChunkWriter(run.dir, tag, chunk_size, made_by, create=None if run.existing else run.publish)
    generate_groups(gen, p.generator, planner, filter_instances, groups, done, writer, summary,
                    len(todo) if show_progress else 0)


def prepare_inputs(store, p: Plugins, planner: Planner, todo, group: int, tag: str, dev: str, show_progress: bool):
    """The masks and the clothing bank the pending items need (existing masks first: checking them writes nothing)."""
    def masks():
        return ensure_masks(store, p.masker, p.mask_settings, sorted({i for i, _ in todo}), device=dev,
                            batch_size=group, tag=tag, show_progress=show_progress)

    mask_set = None
    if p.needs_masks and MASKER.has(p.mask_cls, "existing"):  # existing masks write nothing: checked before the bank is built
        mask_set = masks()
    planner.prepare(dev, show_progress)  # the engine's own plan: its clothing bank
    if p.needs_masks and mask_set is None:
        mask_set = masks()
    planner.use_masks(mask_set)


def generate_groups(gen, generator: str, planner: Planner, filter_instances, groups, done, writer, summary: dict,
                    bar_total: int) -> None:
    """Each group with an item still to make: generated, judged, its new items published; counts into ``summary``."""
    from reidkit.progress import progress_bar

    start = time.perf_counter()
    with progress_bar(bar_total, f"expand {summary['run']}") as update:
        try:
            for group in groups:
                wanted = [k not in done for k in group]
                if not any(wanted):
                    continue
                # the whole group goes to the generator and the filters, also members already made (a resume
                # mid-group): the same batch mates as in an uninterrupted run, so the same bytes
                group_items = [planner.item(k) for k in group]
                outputs, nonfinite = _checked(gen.generate(group_items), group_items, generator)
                verdicts = judge(filter_instances, group_items, outputs, nonfinite)
                for item, out, verdict, w in zip(group_items, outputs, verdicts, wanted):
                    if not w:
                        continue
                    writer.add(item, out, verdict)
                    summary["generated"] += 1
                    summary["kept" if verdict.kept else "rejected"] += 1
                    if not verdict.kept:
                        summary["reject_reasons"][verdict.reason] = summary["reject_reasons"].get(verdict.reason, 0) + 1
                update(advance=sum(wanted), status=f"{summary['rejected']} rejected")
        finally:
            writer.flush()  # every finished item is published, also on Ctrl-C
            summary["seconds"] = time.perf_counter() - start


def summarise(summary: dict, store, run: OpenedRun, p: Plugins, planner: Planner, dev: str) -> dict:
    """Phase 7: speed, each reporting filter's pass rates over the whole run, and the clothing bank's counters."""
    summary["images_per_s"] = summary["generated"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    summary["pass_rates"] = run_pass_rates(run.dir, store, p.filter_specs, dev)
    summary.update(planner.bank_counts())
    return summary


def _checked(outputs, items, generator):
    """Outputs as uint8 images of the source's size; remembers which held NaN or inf."""
    outputs = list(outputs)
    if len(outputs) != len(items):
        raise ReidkitError(f"generator '{generator}' returned {len(outputs)} images for {len(items)} items")
    clean, nonfinite = [], []
    for item, out in zip(items, outputs):
        out = np.asarray(out)
        if out.shape != item.image.shape:
            raise ReidkitError(f"generator '{generator}' returned shape {out.shape} for a {item.image.shape} source")
        bad = bool(out.dtype.kind == "f" and not np.isfinite(out).all())
        if out.dtype != np.uint8:
            out = np.clip(np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0), 0, 255).round().astype(np.uint8)
        clean.append(out)
        nonfinite.append(bad)
    return clean, nonfinite


def judge(filter_instances, items, outputs, nonfinite) -> list[Verdict]:
    """Every filter scores every item (all scores kept); an item is kept when all filters keep it."""
    verdicts = [Verdict(True) for _ in items]
    for fname, f in filter_instances:
        for v, fv in zip(verdicts, f.judge(items, outputs, nonfinite)):
            v.scores.update({f"{fname}.{k}": s for k, s in fv.scores.items()})
            if not fv.kept and v.kept:
                v.kept, v.reason = False, f"{fname}: {fv.reason}"
    return verdicts


class _ChunkWriter:
    """Buffers finished items and publishes them as one chunk every ``size`` items."""

    def __init__(self, run_dir, tag, size, attrs, create=None):
        self.run_dir, self.tag, self.size, self.attrs = run_dir, tag, max(1, int(size)), attrs
        self.create = create  # makes the run's part.json before the first chunk (None: it exists)
        self.rows = self._empty()

    @staticmethod
    def _empty():
        from reidkit.store.runs import ITEM_COLUMNS

        return {c: [] for c in ITEM_COLUMNS}

    def add(self, item: GenerationItem, image: np.ndarray, verdict: Verdict):
        r = self.rows
        r["image"].append(encode_png(image))
        r["source_index"].append(item.source_index)
        r["variant"].append(item.variant)
        r["pid"].append(item.pid)
        r["camera"].append(item.camera)
        r["target_clothes_key"].append(item.target_key)
        r["prompt"].append(item.prompt)
        r["seed"].append(item.seed)
        r["kept"].append(bool(verdict.kept))
        r["reject_reason"].append(verdict.reason)
        r["scores"].append(json.dumps(verdict.scores, sort_keys=True))
        if len(r["image"]) >= self.size:
            self.flush()

    def flush(self):
        if self.rows["image"]:
            if self.create is not None:
                self.create()
                self.create = None
            chunks.write_chunk(self.run_dir, self.tag, self.rows, attrs=self.attrs)
            self.rows = self._empty()
