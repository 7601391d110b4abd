"""Shared by the training tests: a tiny store and a generated run written straight through the store's part API."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

TINY = {"ids_per_batch": 2, "images_per_id": 2, "height": 64, "width": 32, "num_workers": 0, "device": "cpu", "amp": "none"}


def make_store(directory: Path, ids=8, outfits=3, cameras=2, shots=1) -> Path:
    path = Path(directory) / "world.h5"
    subprocess.run([sys.executable, "-m", "reidkit.cli", "adapt", "synthetic", "--out", str(path), "--ids", str(ids),
                    "--outfits", str(outfits), "--cameras", str(cameras), "--shots", str(shots), "--height", "64",
                    "--width", "32"], check=True, capture_output=True, cwd=path.parent)  # not the repo root: test the installed package
    return path


def write_run(store_path, name="gen", variants=2, split="train", reject=()) -> Path:
    """Variant v of image i: its clothing pixels channel-rotated v+1 times (kept unless (i, v) in ``reject``)."""
    from reidkit import open_store
    from reidkit.store.chunks import create_part, write_chunk
    from reidkit.store.imagecodec import encode_png

    store = open_store(store_path)
    clothing = store.mask_sets()["ground_truth"]
    d = create_part(store, "runs", name, {"generator": "test-rotate", "settings": {"variants": variants, "split": split}})
    cols = {k: [] for k in ("image", "source_index", "variant", "pid", "camera", "target_clothes_key", "prompt", "seed",
                            "kept", "reject_reason", "scores")}
    for i in store.split(split):
        image, mask = store.image(i), clothing.clothing_mask(i)
        for v in range(variants):
            out = image.copy()
            out[mask] = np.roll(image[mask], v + 1, axis=-1)
            kept = (int(i), v) not in reject
            for k, val in (("image", encode_png(out)), ("source_index", int(i)), ("variant", v), ("pid", int(store.pid[i])),
                           ("camera", int(store.camera[i])), ("target_clothes_key", ""), ("prompt", ""), ("seed", v),
                           ("kept", kept), ("reject_reason", "" if kept else "test"), ("scores", "{}")):
                cols[k].append(val)
    write_chunk(d, "main", cols)
    return d


def tiny_config(plugin="baseline", **settings):
    from reidkit.training.config import resolve_config

    config = resolve_config(plugin, {}, {**TINY, "epochs": 1, **settings})
    config["backbone"] = {**config["backbone"], "model": "resnet18", "last_stride": 1, "weights": None}  # random init: no hub
    return config


def train(store_path, config, out, **kwargs):
    """``reidkit.training.engine.train`` with the evaluator the train command hands it (``eval_every``)."""
    from reidkit.evaluation.during_training import TestSetEvaluator
    from reidkit.training.engine import train as engine_train

    kwargs.setdefault("evaluator", TestSetEvaluator())
    return engine_train(store_path, config, out, **kwargs)
