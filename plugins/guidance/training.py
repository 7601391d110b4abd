"""Training DLCR's latent discriminator: real crops of a split vs a run's kept generated images.

Every image is resized to the generator's working size, encoded once by the
inpainting pipeline's own VAE (the posterior's mean and std are cached under
OUT/latents/), and at each use a latent is drawn from that posterior, scaled
by the VAE's scaling factor (the space the denoising loop works in), and
noised at a uniformly drawn diffusion step t with the pipeline's scheduler
alphas: x_t = sqrt(a_t) z + sqrt(1 - a_t) n. The discriminator sees (x_t,
t / (T - 1)) and learns real (1) vs generated (0) with binary cross-entropy.

Persons are split into a training and a held-out part (seeded), so held-out
accuracy is measured on people the discriminator never saw. Every random
draw comes from a generator seeded by (seed, stream, epoch): an epoch's
batches are a function of the settings alone, so a run resumed from its
last per-epoch checkpoint ends with the bytes of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.errors import ReidkitError
from reidkit.plugins.guidance.discriminator import (ARCHITECTURE_DEFAULTS, DLCR_EPOCH, FORMAT, SETTINGS_FILE,
                                                   WEIGHTS_FILE, architecture, build, epoch_file)
from reidkit.progress import progress_bar
from reidkit.store import atomic, open_store
from reidkit.training import checkpoint as ckpt

# DLCR's DG/train.py: batch 16 (8 real + 8 generated), Adam lr 3e-4, weight decay 1e-7, 120 epochs
TRAIN_DEFAULTS = {
    "model": None,  # None: the run's generator model, else DLCR's SD-1.5 inpainting
    "width": None,  # None: the run's working size, else DLCR's 256 x 768
    "height": None,
    "epochs": 120,
    "batch_size": 16,  # half real, half generated
    "lr": 3e-4,
    "weight_decay": 1e-7,
    "heldout": 0.2,  # fraction of the persons held out for the accuracy in log.csv
    "seed": 0,
    "dtype": "auto",  # the VAE's dtype: auto = float16 on GPU, float32 on CPU
    "encode_batch": 16,
    "report_threshold": 200,  # log.csv also splits held-out accuracy at this step (guidance acts above it)
    "keep_epochs": [DLCR_EPOCH],  # epochs whose weights stay in OUT/epochs/ (DLCR guides with epoch 50's)
}
# settings that must agree for a rerun to resume (epochs may grow: train further)
MATCHED = ("model", "width", "height", "batch_size", "lr", "weight_decay", "heldout", "seed", "dtype", "architecture",
           "store_fingerprint", "run", "split", "items")
LOG_COLUMNS = ("epoch", "steps", "train_loss", "train_acc", "heldout_loss", "heldout_acc", "heldout_acc_real",
               "heldout_acc_generated", "heldout_acc_t_le_threshold", "heldout_acc_t_gt_threshold")
REAL, GENERATED = 1.0, 0.0
_SPLIT_STREAM, _EPOCH_STREAM, _EVAL_STREAM, _INIT_STREAM = 2, 3, 4, 5
LOG_FILE, STATE_FILE = "log.csv", "state.pt"


def resolve_settings(overrides: dict | None) -> dict:
    """TRAIN_DEFAULTS and ARCHITECTURE_DEFAULTS updated by ``overrides`` (architecture keys may be given flat)."""
    from reidkit.generation.contracts import coerce_setting

    settings = dict(TRAIN_DEFAULTS)
    arch = dict(ARCHITECTURE_DEFAULTS)
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if key in TRAIN_DEFAULTS:
            default = TRAIN_DEFAULTS[key]
            settings[key] = coerce_setting(value, default if default is not None else 0) if value is not None else None
            if key == "model" and value is not None:
                settings[key] = str(value)
        elif key in ARCHITECTURE_DEFAULTS:
            arch[key] = coerce_setting(value, ARCHITECTURE_DEFAULTS[key])
        elif key == "architecture" and isinstance(value, dict):
            arch.update(value)
        else:
            known = ", ".join(sorted(set(TRAIN_DEFAULTS) | set(ARCHITECTURE_DEFAULTS)))
            raise ReidkitError(f"discriminator train has no setting '{key}' (settings: {known})")
    settings["architecture"] = architecture(arch)
    if isinstance(settings["keep_epochs"], int) and not isinstance(settings["keep_epochs"], bool):
        settings["keep_epochs"] = [settings["keep_epochs"]]
    keep = settings["keep_epochs"]
    if not isinstance(keep, list) or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in keep):
        raise ReidkitError(f"discriminator train: keep_epochs must be a list of epoch numbers >= 1, got {keep!r}")
    settings["keep_epochs"] = sorted(set(keep))
    for key, low in (("epochs", 1), ("batch_size", 2), ("encode_batch", 1)):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < low:
            raise ReidkitError(f"discriminator train: {key} must be an integer >= {low}, got {settings[key]!r}")
    if not isinstance(settings["heldout"], (int, float)) or not 0.0 < float(settings["heldout"]) < 1.0:
        raise ReidkitError(f"discriminator train: heldout must be a fraction in (0, 1), got {settings['heldout']!r}")
    for key in ("lr", "weight_decay"):
        if not isinstance(settings[key], (int, float)) or isinstance(settings[key], bool) or settings[key] < 0:
            raise ReidkitError(f"discriminator train: {key} must be a number >= 0, got {settings[key]!r}")
    return settings


def run_label(run) -> str:
    return str(run.info.get("name") or run.dir.name)


def _seed(*parts) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] & np.uint64(2**63 - 1))


class Dataset:
    """Real images of the run's split and the run's kept images: (kind, index) items, labels, persons, train/held-out."""

    def __init__(self, store, run, heldout: float, seed: int):
        split = run.settings.get("split", "train")
        if split != "train":  # query or gallery images must never train anything
            raise ReidkitError(f"run '{run_label(run)}' expanded split '{split}': a discriminator learns from the training "
                               "split only (use a run of --split train)")
        real = store.split(split)
        real = real[~store.junk[real] & ~store.distractor[real]]
        kept = np.flatnonzero(run.kept()) if run.files else np.zeros(0, np.int64)
        if len(real) == 0 or len(kept) == 0:
            raise ReidkitError(f"run '{run_label(run)}' gives {len(real)} real images of split '{split}' and {len(kept)} kept "
                               "generated images: both are needed to train a discriminator")
        self.split = split
        self.kinds = np.concatenate([np.ones(len(real), np.int8), np.zeros(len(kept), np.int8)])  # 1 real, 0 generated
        self.index = np.concatenate([real, kept]).astype(np.int64)  # store index (real) or run row (generated)
        pids = np.concatenate([store.pid[real], run.column("pid")[kept]]).astype(np.int64)
        persons = np.unique(pids)
        order = np.random.default_rng(_seed(seed, _SPLIT_STREAM)).permutation(len(persons))
        n_held = max(1, int(math.ceil(float(heldout) * len(persons))))
        if n_held >= len(persons):
            raise ReidkitError(f"run '{run_label(run)}' covers {len(persons)} person(s): too few to hold out {heldout:.0%} "
                               "and still train (lower --set heldout or expand more persons)")
        held = np.isin(pids, persons[order[:n_held]])
        self.train = np.flatnonzero(~held)
        self.heldout = np.flatnonzero(held)
        for name, part in (("training", self.train), ("held-out", self.heldout)):
            kinds = self.kinds[part]
            if not kinds.any() or kinds.all():
                raise ReidkitError(f"the {name} persons have only {'real' if kinds.all() else 'generated'} images "
                                   "(expand more of the split or change --seed)")
        self.counts = {"real_train": int(self.kinds[self.train].sum()), "generated_train": int((1 - self.kinds[self.train]).sum()),
                       "real_heldout": int(self.kinds[self.heldout].sum()),
                       "generated_heldout": int((1 - self.kinds[self.heldout]).sum())}

    def image(self, store, run, i) -> np.ndarray:
        return store.image(int(self.index[i])) if self.kinds[i] else run.image(int(self.index[i]))


def _vae_and_alphas(model: str, device: str, dtype_name: str):
    """The inpainting pipeline's VAE and its scheduler's alphas_cumprod, each by from_pretrained(model, subfolder=...)."""
    import warnings

    from diffusers import AutoencoderKL, DDIMScheduler

    from reidkit.devices import torch_dtype

    dtype = torch_dtype(dtype_name, device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype)
            scheduler = DDIMScheduler.from_pretrained(model, subfolder="scheduler")
    except (OSError, ValueError, EnvironmentError) as exc:
        from reidkit.hub import load_failure

        raise ReidkitError(load_failure("inpainting model (its vae/ and scheduler/)", model, exc, "pass a local folder with --model")) from None
    return vae.to(device).eval(), scheduler


def encode_all(store, run, data: Dataset, vae, settings: dict, out: Path, device: str, show_progress: bool):
    """(mean, std) float16 arrays (N, C, h, w) of the scaled VAE posterior of every item, memory-mapped; cached in
    OUT/latents/ and filled batch by batch, so an interrupted encoding continues where it stopped."""
    import cv2
    import torch

    w, h = int(settings["width"]), int(settings["height"])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (len(data.index), int(vae.config.latent_channels), h // factor, w // factor)
    key = {"store_fingerprint": store.fingerprint, "run": run_label(run), "items": len(data.index), "model": settings["model"],
           "width": w, "height": h, "dtype": str(vae.dtype), "shape": list(shape), "run_chunks": sorted(p.name for p in run.files)}
    folder = out / "latents"
    progress_file = folder / "progress.json"
    done = 0
    if progress_file.is_file():
        state = json.loads(progress_file.read_text())
        done = int(state["done"]) if state.get("key") == key else -1
    if done < 0 or not (folder / "mean.npy").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # another store, run or model: encode afresh
        folder.mkdir(parents=True)
        for name in ("mean", "std"):
            np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float16, shape=shape).flush()
        atomic.write_json_atomic(progress_file, {"key": key, "done": 0})
        done = 0
    mean = np.load(folder / "mean.npy", mmap_mode="r+")
    std = np.load(folder / "std.npy", mmap_mode="r+")
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    step = int(settings["encode_batch"])
    with progress_bar(len(data.index) - done if show_progress else 0, "encode latents") as update:
        for start in range(done, len(data.index), step):
            idx = range(start, min(start + step, len(data.index)))
            batch = np.stack([cv2.resize(data.image(store, run, i), (w, h), interpolation=cv2.INTER_CUBIC) for i in idx])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [-1, 1], the VAE's input range
            with torch.inference_mode():
                dist = vae.encode(x.to(device=device, dtype=vae.dtype)).latent_dist
            # the scaled posterior: (z - shift) * scale, with z = mean + std * n
            mean[start:idx.stop] = ((dist.mean.float() - shift) * scale).cpu().numpy().astype(np.float16)
            std[start:idx.stop] = (dist.std.float() * scale).cpu().numpy().astype(np.float16)
            mean.flush()
            std.flush()
            atomic.write_json_atomic(progress_file, {"key": key, "done": idx.stop})
            update(advance=len(idx))
    return np.load(folder / "mean.npy", mmap_mode="r"), np.load(folder / "std.npy", mmap_mode="r")


def noisy_batch(mean, std, rows, labels, alphas_cumprod, generator):
    """Latents drawn from the cached posteriors of ``rows``, noised at uniform steps: (x_t, t in [0, 1], steps, labels)."""
    import torch

    m = torch.from_numpy(np.asarray(mean[np.sort(rows)], np.float32))
    s = torch.from_numpy(np.asarray(std[np.sort(rows)], np.float32))
    back = np.argsort(np.argsort(rows))  # memory-mapped reads in ascending order, then the batch's own order
    m, s = m[back], s[back]
    z = m + s * torch.randn(m.shape, generator=generator)
    steps = torch.randint(0, len(alphas_cumprod), (len(rows),), generator=generator)
    a = alphas_cumprod[steps].float()[:, None, None, None]
    x = a.sqrt() * z + (1.0 - a).sqrt() * torch.randn(m.shape, generator=generator)
    return x, steps.float() / (len(alphas_cumprod) - 1), steps, torch.as_tensor(labels, dtype=torch.float32)


def evaluate(net, mean, std, data: Dataset, alphas_cumprod, settings: dict, device: str) -> dict:
    """Held-out loss and balanced accuracy (mean of real and generated accuracy: chance is 0.5 however unbalanced),
    each item noised by a fixed seeded draw, so epochs are compared on the same noisy latents."""
    import torch

    g = torch.Generator().manual_seed(_seed(settings["seed"], _EVAL_STREAM))
    rows = data.heldout
    losses, correct, labels, steps = [], [], [], []
    bs = 2 * int(settings["batch_size"])
    with torch.no_grad():
        for b in range(0, len(rows), bs):
            part = rows[b:b + bs]
            x, t_unit, st, y = noisy_batch(mean, std, part, data.kinds[part].astype(np.float32), alphas_cumprod, g)
            logit = net(x.to(device), t_unit.to(device)).float().cpu()
            losses.append(torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none"))
            correct.append(((logit > 0).float() == y).float())
            labels.append(y)
            steps.append(st)
    loss, correct, labels, steps = (torch.cat(v).numpy() for v in (losses, correct, labels, steps))

    def balanced(mask):
        parts = [correct[mask & (labels == k)].mean() for k in (REAL, GENERATED) if (mask & (labels == k)).any()]
        return float(np.mean(parts)) if parts else float("nan")

    everything = np.ones(len(labels), bool)
    low = steps <= int(settings["report_threshold"])
    return {"heldout_loss": float(loss.mean()), "heldout_acc": balanced(everything),
            "heldout_acc_real": float(correct[labels == REAL].mean()),
            "heldout_acc_generated": float(correct[labels == GENERATED].mean()),
            "heldout_acc_t_le_threshold": balanced(low), "heldout_acc_t_gt_threshold": balanced(~low)}


def epoch_batches(data: Dataset, epoch: int, settings: dict):
    """The epoch's batches of training rows: every real training image once, each batch half real, half generated
    (generated rows follow a fresh permutation each epoch, cycled when there are fewer): DLCR's pairing."""
    rng = np.random.default_rng(_seed(settings["seed"], _EPOCH_STREAM, epoch))
    real = data.train[data.kinds[data.train] == 1]
    gen = data.train[data.kinds[data.train] == 0]
    real = real[rng.permutation(len(real))]
    gen = np.resize(gen[rng.permutation(len(gen))], len(real))
    half = max(1, int(settings["batch_size"]) // 2)
    n = max(1, len(real) // half)  # the last partial batch is dropped, as in the reference (one batch at least)
    return [np.concatenate([real[b * half:(b + 1) * half], gen[b * half:(b + 1) * half]]) for b in range(n)]


def _log_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in LOG_COLUMNS})
    return buf.getvalue()


def _publish_checkpoint(out: Path, epoch: int, weights: dict, state: dict, meta: dict, log: str, keep: int = 2):
    """checkpoints/epoch-NNNN/{discriminator.safetensors, state.pt, log.csv}, published whole as training's are."""
    import torch

    def write(folder: Path):
        (folder / WEIGHTS_FILE).write_bytes(ckpt.safetensors_bytes(weights, meta))
        torch.save(state, folder / STATE_FILE)
        (folder / LOG_FILE).write_text(log)

    ckpt.publish_epoch(out, epoch, write, keep)


def train_discriminator(store_path, run_name: str, out, *, settings: dict | None = None, device: str | None = "auto",
                        show_progress: bool = True) -> dict:
    """Train (or resume training) a latent discriminator into ``out``; return a summary (the last log row and counts).

    Named steps, as the Re-ID trainer's: :func:`prepare_discriminator_run` (settings, data split, the resume check),
    the latents, :func:`restore_discriminator` (from the newest checkpoint folder, loaded as training's are), then
    the epochs, each published whole (``publish_epoch``, shared with training)."""
    import torch

    from reidkit.devices import torch_device

    s, store, run, data, record, out = prepare_discriminator_run(store_path, run_name, out, settings, device)
    dev = torch_device(device)
    vae, scheduler = _vae_and_alphas(s["model"], dev, s["dtype"])
    alphas = scheduler.alphas_cumprod.float()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    record.update({"latent_channels": int(vae.config.latent_channels), "latent_size": [s["height"] // factor, s["width"] // factor],
                   "vae_scaling_factor": float(vae.config.scaling_factor), "num_train_timesteps": len(alphas),
                   "time_input": "t / (num_train_timesteps - 1)", "label": "1 = real, 0 = generated"})
    out.mkdir(parents=True, exist_ok=True)
    mean, std = encode_all(store, run, data, vae, s, out, dev, show_progress)
    del vae  # only the cached latents are needed from here on

    torch.manual_seed(_seed(s["seed"], _INIT_STREAM))  # the initial weights
    net = build(s["architecture"], record["latent_channels"]).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(s["lr"]), weight_decay=float(s["weight_decay"]))
    start_epoch, log_rows = restore_discriminator(out, net, optimizer)
    epochs = int(s["epochs"])
    batches_per_epoch = len(epoch_batches(data, 0, s))
    with progress_bar((epochs - start_epoch) * batches_per_epoch if show_progress else 0, f"discriminator {out.name}",
                      unit="step") as update:
        for epoch in range(start_epoch, epochs):
            row = _train_epoch(net, optimizer, epoch, data, mean, std, alphas, s, dev, update)
            row = {"epoch": epoch + 1, "steps": (epoch + 1) * batches_per_epoch, **row,
                   **evaluate(net, mean, std, data, alphas, s, dev)}
            log_rows.append(row)
            update(status=f"epoch {epoch + 1}: held-out acc {row['heldout_acc']:.3f}")
            _publish_epoch(out, epoch, net, optimizer, log_rows, record)
    final = log_rows[-1]
    return {"out": str(out), "epochs": epochs, "resumed_from_epoch": start_epoch, **data.counts,
            **{k: final[k] for k in LOG_COLUMNS if k != "epoch"}}


def prepare_discriminator_run(store_path, run_name: str, out, settings: dict | None, device):
    """Settings (the DLCR run's model and size where not given), the held-out split, the record settings.json keeps,
    and the resume check (another discriminator in ``out`` is refused), before any model loads."""
    from reidkit.devices import check_device
    from reidkit.plugins.generators.dlcr import DlcrGenerator

    check_device(device)
    s = resolve_settings(settings)
    store = open_store(store_path)
    run = store.run(run_name)
    run_gen = run.settings.get("generator_settings") or {}
    s["model"] = s["model"] or run_gen.get("model") or DlcrGenerator.defaults["model"]
    s["width"] = int(s["width"] or run_gen.get("width") or DlcrGenerator.defaults["width"])
    s["height"] = int(s["height"] or run_gen.get("height") or DlcrGenerator.defaults["height"])
    data = Dataset(store, run, s["heldout"], s["seed"])
    out = Path(out)
    record = {"format": FORMAT, "reidkit_version": __version__, **s, "store": str(store.path),
              "store_fingerprint": store.fingerprint, "run": run_name, "split": data.split, "items": data.counts,
              "run_generator": run.settings.get("generator")}
    _check_resumable(out, record)
    return s, store, run, data, record, out


def restore_discriminator(out: Path, net, optimizer) -> tuple[int, list]:
    """The first epoch to train and the log so far, weights and optimiser put back from the newest complete checkpoint
    (training's ``latest_checkpoint`` / ``load_state``: tensors and plain values only); (0, []) without one."""
    from safetensors.torch import load_file

    latest = ckpt.latest_checkpoint(out)
    if latest is None or latest == out:  # out itself: the legacy top-level pair of a Re-ID run, never a discriminator's
        return 0, []
    state = ckpt.load_state(latest)
    net.load_state_dict(load_file(str(latest / WEIGHTS_FILE)))
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]) + 1, json.loads(state["log_rows"])


def _train_epoch(net, optimizer, epoch: int, data, mean, std, alphas, s: dict, dev: str, update) -> dict:
    """One epoch's steps (noise and times drawn from the epoch's own seed); its mean loss and accuracy."""
    import torch

    net.train()
    g = torch.Generator().manual_seed(_seed(s["seed"], _EPOCH_STREAM, epoch))
    losses, accs = [], []
    for rows in epoch_batches(data, epoch, s):
        x, t_unit, _, y = noisy_batch(mean, std, rows, data.kinds[rows].astype(np.float32), alphas, g)
        logit = net(x.to(dev), t_unit.to(dev))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        accs.append(float(((logit.detach() > 0).float().cpu() == y).float().mean()))
        update(advance=1)
    net.eval()
    return {"train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs))}


def _publish_epoch(out: Path, epoch: int, net, optimizer, log_rows, record):
    """The epoch's checkpoint, its weights in OUT/epochs/ when it is one to keep, then (each atomically) the log, the
    weights and their settings at the top of OUT."""
    weights = ckpt.model_state(net)
    meta = {"format": FORMAT, "epoch": str(epoch + 1)}
    log = _log_text(log_rows)
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "log_rows": json.dumps(log_rows)}
    _publish_checkpoint(out, epoch, weights, state, meta, log)
    if epoch + 1 in record["keep_epochs"]:  # before settings.json counts the epoch, so a counted kept epoch is there
        epoch_file(out, epoch + 1).parent.mkdir(exist_ok=True)
        ckpt.write_safetensors(epoch_file(out, epoch + 1), weights, meta)
    with atomic.atomic_output(out / LOG_FILE, replace=True) as partial:
        partial.write_text(log)
    ckpt.write_safetensors(out / WEIGHTS_FILE, weights, meta)
    last = log_rows[-1]
    atomic.write_json_atomic(out / SETTINGS_FILE, {**record, "epochs_done": epoch + 1,
                                                   "heldout_acc": last["heldout_acc"],
                                                   "heldout_acc_t_gt_threshold": last["heldout_acc_t_gt_threshold"]})


def _check_resumable(out: Path, record: dict):
    """An OUT folder holding another discriminator (other store, run or settings) is refused, before any work."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        if out.exists() and not out.is_dir():
            raise ReidkitError(f"--out {out} exists and is not a folder")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ReidkitError(f"{path} is unreadable: remove {out} or choose another --out") from None
    differ = [k for k in MATCHED if json.dumps(old.get(k), sort_keys=True) != json.dumps(record.get(k), sort_keys=True)]
    if differ:
        raise ReidkitError(f"{out} holds a discriminator trained with other settings ({', '.join(differ)} differ): "
                           "choose another --out, or rerun with the same settings to resume")
