"""Per-split counts of a store (what ``reidkit info`` prints)."""
from __future__ import annotations

import numpy as np


def split_summary(store, indices) -> dict:
    indices = np.asarray(indices, dtype=np.int64)
    pid = store.pid[indices]
    junk = store.junk[indices]
    distractor = store.distractor[indices]
    # Published sizes count distractors (pid 0 of Market-1501, Duke's extra gallery ids) but never junk.
    kept = ~junk
    clothes = store.clothes_id[indices]
    tracklet = store.tracklet[indices]
    out = {
        "ids": int(len(np.unique(pid[kept]))),
        "images": int(kept.sum()),
        "cameras": int(len(np.unique(store.camera[indices]))),
        "outfits": int(len(np.unique(clothes[kept & ~distractor & (clothes >= 0)]))),
        "junk": int(junk.sum()),
        "distractors": int(distractor.sum()),
        "distractor_ids": int(len(np.unique(pid[distractor]))),
        "stored_images": int(len(indices)),
    }
    if (tracklet >= 0).any():
        out["tracklets"] = int(len(np.unique(tracklet[tracklet >= 0])))
    return out


def store_summary(store) -> dict:
    """Everything ``reidkit info --json`` prints.

    ``images`` and ``ids`` count everything evaluation sees: distractors are
    included (and also counted apart), junk is left out (and counted apart),
    so the numbers line up with published split sizes.
    """
    runs = {}
    for name, run in store.runs().items():
        kept = run.kept() if run.files else np.array([], dtype=bool)
        runs[name] = {"items": int(len(kept)), "kept": int(kept.sum()), "generator": run.info.get("generator")}
    return {
        "path": str(store.path),
        "dataset": store.dataset,
        "schema_version": int(store.attrs["schema_version"]),
        "fingerprint": store.fingerprint,
        "created": store.attrs.get("created"),
        "reidkit_version": store.attrs.get("reidkit_version"),
        "settings": store.settings,
        "images": len(store),
        "splits": {name: split_summary(store, idx) for name, idx in sorted(store.splits.items())},
        "protocols": [p.as_dict() for p in store.protocols],
        "masks": {name: len(m) for name, m in store.mask_sets().items()},
        "runs": runs,
        "skipped": store.skipped,
    }
