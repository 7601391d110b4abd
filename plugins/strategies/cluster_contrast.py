"""``cluster-contrast``: unsupervised Re-ID (USL) by Cluster Contrast (Dai et al.), as its authors' README runs it
(alibaba/cluster-contrast-reid; methods.md 2.1), and domain adaptation (UDA) as the same run started from a model
trained with labels on another store (``--init-from RUN_OR_EXPORT``).

It never reads the training persons' identities. At the start of every epoch (hook :class:`PseudoLabels`):

1. the features of every training image: the model in eval mode, the L2-normalised BN-neck feature (the test
   feature), no flip (``reidkit.evaluation.inference.extract``; under torchrun each rank extracts its share and the
   rows are gathered on every rank, ``reidkit.evaluation.sharded.extract_sharded``);
2. rank 0 clusters them: Jaccard distance of the k-reciprocal encoding (k1 30, k2 6), DBSCAN (eps 0.6, min_samples 4,
   precomputed; ``clustering.py``), and broadcasts the labels: every rank then holds the same labels and builds the
   same memory from the same gathered features (ranks never cluster on their own, so they cannot disagree);
3. the labels become the run's training items' labels (``trainer.run.items``: -1 for an un-clustered image, which the
   sampler leaves out for the epoch; ``num_classes`` the number of clusters), the memory is rebuilt from the cluster
   means, and ``trainer.restart_data(epoch)`` plans the epoch's batches from the new labels;
4. each step's loss is cross-entropy over q . c_k / 0.05 (q the L2-normalised BN-neck feature) against every
   cluster; after the optimiser step (hook ``after_step``, so the gradient used the memory before the update, as
   the reference's autograd function does), each sample moves its cluster's entry, one at a time in batch order
   (under torchrun: the whole global batch, gathered in its single-process order, on every rank).

The memory is not a weight: a run resumed at an epoch's end rebuilds it from its restored weights at the next
epoch's start, exactly as the uninterrupted run did; a checkpoint written inside an epoch (SIGTERM) holds the
epoch's labels and the memory as it had moved (the hook's state), which the resumed run continues with.
"""
from __future__ import annotations

import sys

from reidkit.contracts import Setting
from reidkit.errors import ReidkitError
from reidkit.plugins.strategies.schedule import warmup_step_factor
from reidkit.plugins.strategies.settings import spec_for
from reidkit.training.data import BOT_AUGMENT
from reidkit.training.hooks import Hook

# Cluster Contrast's own settings (examples/cluster_contrast_train_usl.py; the README's values where they differ)
OWN_SETTINGS = {
    "eps": Setting(float, "DBSCAN radius on the Jaccard distance", min=0, min_open=True),
    "min_samples": Setting(int, "DBSCAN: images within eps (itself included) that make a core image", min=1),
    "k1": Setting(int, "Jaccard distance: k-NN list length (the image itself included)", min=1),
    "k2": Setting(int, "Jaccard distance: neighbours averaged by query expansion (at most k1)", min=1),
    "temperature": Setting(float, "temperature of the cluster-contrast cross-entropy", min=0, min_open=True),
    "momentum": Setting(float, "memory update: c <- m c + (1 - m) x", min=0, max=1),
    "memory": Setting(str, "memory update: every sample in batch order (all) or the least similar per cluster (hard)",
                      choices=("all", "hard")),
    "camera_centred": Setting(bool, "cluster features with each camera's mean removed (a deviation, off in the reference: "
                              "docs/fidelity.md)"),
}


class ClusterContrastStrategy:
    """Cluster Contrast: DBSCAN pseudo-labels on Jaccard distances every epoch, a momentum cluster memory, InfoNCE."""

    # the README's Market-1501 run: -b 256 -a resnet50 --iters 200 --momentum 0.1 --eps 0.6 --num-instances 16, with
    # the script's other defaults (k1 30, k2 6, temp 0.05, lr 3.5e-4, wd 5e-4, step 20, 50 epochs, GeM, 256x128)
    defaults = {
        # StepLR(step_size=20, gamma=0.1), stepped after each epoch
        "epochs": 50, "lr": 3.5e-4, "weight_decay": 5e-4, "milestones": [20, 40], "gamma": 0.1,
        "max_steps_per_epoch": 200,  # --iters 200 (400 on MSMT17)
        "ids_per_batch": 16, "images_per_id": 16,  # -b 256 --num-instances 16
        "sampler": "multigallery",  # RandomMultipleGallerySampler: K - 1 partners from other cameras
        "height": 256, "width": 128,
        "augment": dict(BOT_AUGMENT),  # flip 0.5, pad 10 + random crop, erasing 0.5 filled with the ImageNet mean
        "resize": "pil-bicubic",  # T.Resize((h, w), interpolation=3), training and test
        "test_flip": False,  # the test feature: the normalised BN-neck feature of the image alone
        "backbone": {"plugin": "timm", "model": "resnet50", "weights": "imagenet", "last_stride": 1, "pooling": "gem",
                     "embedding_dim": 0, "bnneck": True, "bnneck_shift": False},  # GeM (p = 3, trained), BN with frozen bias
        "eps": 0.6, "min_samples": 4, "k1": 30, "k2": 6, "temperature": 0.05, "momentum": 0.1, "memory": "all",
        "camera_centred": False,
    }
    settings_spec = {**spec_for(defaults), **OWN_SETTINGS}
    epoch_settings = ("milestones",)
    # after DBSCAN found too few clusters, the run resumes with other clustering settings
    resumable_settings = ("eps", "min_samples", "camera_centred")

    def __init__(self, settings: dict):
        from reidkit.plugins.strategies.clustering import ClusterMemory

        if settings.get("generated"):
            raise ReidkitError("strategy 'cluster-contrast' clusters the store's own training images: it takes no --generated run")
        if int(settings.get("clip_len") or 0) > 0:
            raise ReidkitError("strategy 'cluster-contrast' trains on images: clip_len must be 0")
        if int(settings["k2"]) > int(settings["k1"]):
            raise ReidkitError(f"cluster-contrast: k2 ({settings['k2']}) must be at most k1 ({settings['k1']})")
        self.settings = settings
        self.memory = ClusterMemory(settings["temperature"], settings["momentum"], settings["memory"])

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        """No trained head: the logits are the memory's similarities. ``num_classes`` (the store's persons) is not
        read: the clusters are the classes, and they change every epoch."""
        import torch.nn.functional as F
        from torch import nn

        memory = self.memory

        class ClusterContrastHead(nn.Module):
            def forward(self, feat, bn):
                q = F.normalize(bn.float(), dim=1)
                return {"feat": feat, "q": q, "logits": memory.logits(q)}

        head = ClusterContrastHead()
        object.__setattr__(head, "memory", memory)  # a plain reference: not a module, not a buffer, not in the state
        return head

    def loss(self, outputs, batch, epoch):
        import torch.nn.functional as F

        logits, labels, q = outputs["logits"], batch["label"], outputs["q"]
        valid = batch.get("valid")
        if valid is None:
            loss = F.cross_entropy(logits, labels)
        else:  # padding rows count in no loss (the mean over the valid rows; a mask, not an index: no host sync)
            per_row = F.cross_entropy(logits, labels, reduction="none")
            loss = (per_row * valid).sum() / valid.sum().clamp(min=1)
        # moved into the memory after the optimiser step (PseudoLabels.after_step), with the gradient already taken
        self.memory.pending = (q.detach(), labels, valid)
        return loss, {"contrast": loss.detach()}

    def lr_factor(self, epoch):
        s = self.settings
        return warmup_step_factor(epoch, 0, 1.0, s["milestones"], s["gamma"], 0)

    def variant_limit(self, epoch, num_variants):
        return None

    def hooks(self, trainer):
        return [PseudoLabels(self)]


class PseudoLabels(Hook):
    """Cluster at every epoch's start (labels, memory, the epoch's batches); move the memory after every step."""

    def __init__(self, strategy: ClusterContrastStrategy):
        self.strategy = strategy
        self.epoch, self.labels, self.restored = None, None, None

    def state_dict(self):
        """The epoch's pseudo labels and the memory as it has moved: what a run stopped inside the epoch resumes with
        (clustering again from the weights of mid-epoch would give other labels than the uninterrupted run's)."""
        import torch

        if self.labels is None or self.strategy.memory.features is None:
            return None
        return {"epoch": int(self.epoch), "labels": torch.as_tensor(self.labels, dtype=torch.int64),
                "memory": self.strategy.memory.features.detach().cpu().clone()}

    def load_state_dict(self, state):
        self.restored = state

    def before_epoch(self, epoch: int):
        import numpy as np

        from reidkit.plugins.strategies.clustering import camera_centred, cluster_centres, count_clusters

        t = self.trainer
        s, items = t.config, t.run.items
        restored, self.restored = self.restored, None
        from_checkpoint = restored is not None and t.resumed_steps(epoch) > 0 and int(restored["epoch"]) == epoch
        if from_checkpoint:
            labels = restored["labels"].numpy()  # stopped inside this epoch: its labels and the memory as they were
            clusters = count_clusters(labels)
            self.strategy.memory.reset(restored["memory"].numpy(), t.ctx.device)
        else:
            features = training_features(t)
            # cameras are metadata, not identities: centring per camera keeps the run label-blind
            clustered = camera_centred(features, t.training_cameras()) if s.get("camera_centred") else features
            labels = cluster_on_rank_zero(t, clustered)
            clusters = count_clusters(labels)
        self.epoch, self.labels = epoch, np.asarray(labels, dtype=np.int64)
        if clusters < 2:
            raise ReidkitError(
                f"cluster-contrast, epoch {epoch + 1}: DBSCAN found {clusters} cluster(s) among {len(labels)} training images "
                f"(eps {s['eps']}, min_samples {s['min_samples']}, k1 {s['k1']}); at least 2 are needed: raise eps or lower "
                f"min_samples (--set eps=... --set min_samples=...), or start from a pre-trained model (--init-from); "
                f"checkpoints so far are kept")
        items.label = np.asarray(labels, dtype=np.int64)
        items.num_classes = clusters
        if not from_checkpoint:
            self.strategy.memory.reset(cluster_centres(features, labels, clusters), t.ctx.device)
        t.row_extra["clusters"] = clusters  # into the epoch's log row
        t.restart_data(epoch)
        if t.run_batches.steps(epoch) == 0:
            raise ReidkitError(f"cluster-contrast, epoch {epoch + 1}: {clusters} clusters give no batch of "
                               f"{s['ids_per_batch']} x {s['images_per_id']} images: lower ids_per_batch or images_per_id")
        if t.ctx.main:
            print(f"cluster-contrast, epoch {epoch + 1}: {clusters} clusters, {int((labels < 0).sum())} of {len(labels)} "
                  "images in none", file=sys.stderr)

    def after_epoch(self, epoch: int):
        """``check_sync`` under torchrun: the ranks' memories must be equal too (DDP keeps the parameters equal even
        if they were not, so the parameters' checksums alone would not show it)."""
        t = self.trainer
        if not t.config.get("check_sync") or t.ctx.world == 1:
            return
        import hashlib

        import torch.distributed as dist

        digest = hashlib.sha256(self.strategy.memory.features.cpu().numpy().tobytes()).hexdigest()
        digests = [None] * t.ctx.world
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise ReidkitError(f"check_sync: ranks disagree on the cluster memory after epoch {epoch + 1} "
                               f"({', '.join(d[:12] for d in digests)})")

    def after_step(self):
        memory = self.strategy.memory
        if memory.pending is None:
            return
        x, labels, valid = memory.pending
        memory.pending = None
        t = self.trainer
        if t.ctx.world > 1:
            x, labels, valid = gather_global_batch(x, labels, valid, t.ctx.world, t.sampler.k)
        if valid is not None:
            x, labels = x[valid], labels[valid]
        memory.update(x, labels)


def training_features(trainer):
    """L2-normalised test features (eval mode, no flip) of every training image, on every rank (each extracts its
    share); the torch random state is left as it was (a resumed run draws the same numbers)."""
    import torch
    import torch.nn.functional as F

    from reidkit.evaluation.inference import extract
    from reidkit.evaluation.sharded import extract_sharded
    from reidkit.training.resizing import run_kernel

    t, config = trainer, trainer.config
    model, device = t.model, t.ctx.device
    rng = torch.get_rng_state()
    model.eval()
    try:
        def normalised(batch):
            return F.normalize(model.backbone(batch)[1].float(), dim=1)

        return extract_sharded(lambda idx: extract(normalised, t.store, idx, config["height"], config["width"], device,
                                                   batch_size=int(config["eval_batch_size"]), num_workers=t.workers,
                                                   flip=False, description="cluster-contrast features", kernel=run_kernel(config)),
                               t.run.items.ref, device=device)
    finally:
        model.train()
        torch.set_rng_state(rng)


def cluster_on_rank_zero(trainer, features):
    """DBSCAN labels of ``features``, computed by rank 0 and broadcast to every rank (one process: computed here)."""
    import numpy as np

    from reidkit.plugins.strategies.clustering import dbscan_labels

    t, s = trainer, trainer.config
    error, labels = None, None
    if t.ctx.main:
        try:
            labels = dbscan_labels(features, s["eps"], s["min_samples"], s["k1"], s["k2"], t.ctx.device)
        except Exception as exc:  # the other ranks must not wait for labels that never come
            error = exc
    if t.ctx.world == 1:
        if error is not None:
            raise error
        return labels
    import torch
    import torch.distributed as dist

    failed = np.full(len(features), -2, np.int64)
    shared = torch.as_tensor(failed if labels is None else labels, dtype=torch.int64, device=t.ctx.device)
    dist.broadcast(shared, 0)
    labels = shared.cpu().numpy()
    if error is not None:
        raise error
    if (labels == -2).all():
        raise ReidkitError("cluster-contrast: clustering failed on rank 0 (its message says why)")
    return labels


def gather_global_batch(x, labels, valid, world: int, k: int):
    """Every rank's rows of one step, in the single process's order: rank r holds the global batch's K-slices
    r, r + W, ...; slice g of the global batch is rank g % W's slice g // W."""
    import torch
    import torch.distributed as dist

    valid = torch.ones(len(labels), dtype=torch.bool, device=labels.device) if valid is None else valid

    def gathered(t):
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        slices = len(t) // k
        stacked = torch.stack([p.reshape(slices, k, *p.shape[1:]) for p in parts])  # W x slices x K x ...
        return stacked.transpose(0, 1).reshape(world * slices * k, *t.shape[1:])

    return gathered(x), gathered(labels), gathered(valid.to(torch.uint8)).bool()
