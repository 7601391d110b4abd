"""Identity samplers: P persons x K images per optimiser step, CAL's way or BoT's, as one global batch.

Both build, from ``(seed, epoch)``, each person's images shuffled into groups
of K (a person with fewer than K images: K drawn with replacement; a
remainder of fewer than K is left out). Then:

- ``cal`` (CAL's and DLCR's ``data/samplers.py``): all groups of all persons
  shuffled together and cut into batches of P consecutive groups, the last
  partial batch dropped. Every group is used once per epoch; a batch may hold
  two groups of one person.
- ``bot`` (BoT's RandomIdentitySampler): each batch draws P distinct persons
  that still have groups, until fewer than P have; the largest persons'
  remaining groups are left out.

- ``multigallery`` (Cluster Contrast's RandomMultipleGallerySampler, for its
  pseudo-persons): the persons in a random order, each once per pass; each
  gives one random anchor image and K - 1 partners drawn from its images in
  *other cameras* than the anchor's (without replacement when at least K
  are there, else with), or, when it has none in another camera, from its
  other images (the same rule); a person with a single image gives that
  image alone. The groups are laid end to end and cut into batches of P x K
  images (the last partial batch of a pass dropped), so a group may straddle
  two batches; passes follow one another, each seeded from (seed, epoch,
  pass), until ``min_batches`` batches are planned (the epoch's steps: the
  reference's 200 iterations draw from as many passes as they need). It needs
  each item's camera (``cameras``) and skips items labelled -1.

P x K is the global batch of one optimiser step: under torchrun each of W
ranks takes every W-th group of it (CAL's DistributedRandomIdentitySampler
deals groups to ranks the same way), so the ranks together see exactly the
single process's batch, with the same pairing and augmentation seeds.
``multigallery`` batches are dealt the same way, as P consecutive slices of
K images.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.training.data import GENERATED, REAL, TrainItems

KINDS = ("cal", "bot", "multigallery")


class IdentityBatchSampler:
    """P persons x K images per global batch, optionally each real image paired with a generated variant.

    ``variant_limit(epoch, V)`` from the strategy: ``None`` puts generated images into the persons' pools as
    plain images; an int pairs every real image with one of its first ``limit`` variants (1:1 real and
    generated). Yields this rank's share of each batch as a list of ``(item, sample_seed)``: its real rows, then
    their partners in the same order; a negative item ``~i`` is a padding row (a real image ``i`` with no kept
    variant: its slot holds ``i``'s image, masked out of the losses), so paired batches always hold 2 x P x K rows.
    """

    def __init__(self, items: TrainItems, p: int, k: int, seed: int, variant_limit=None, rank=0, world=1, kind="bot",
                 cameras=None, min_batches=None):
        self.items, self.p, self.k, self.seed = items, int(p), int(k), int(seed)
        self.variant_limit = variant_limit
        self.rank, self.world = int(rank), int(world)
        self.kind = kind
        self.epoch = 0
        self._cache = None
        # multigallery: each item's camera, and the batches an epoch plans at least (passes repeat until then)
        self.cameras = None if cameras is None else np.asarray(cameras)
        self.min_batches = min_batches
        if kind not in KINDS:
            raise ReidkitError(f"sampler must be one of {', '.join(KINDS)} (got {kind!r})")
        if self.p % self.world:
            raise ReidkitError(f"ids_per_batch {self.p} is the global batch's persons: it must be a multiple of the "
                               f"{self.world} processes (each takes an equal share)")
        if kind == "bot" and items.num_classes < self.p:
            raise ReidkitError(f"batch wants {self.p} persons but the training split has only {items.num_classes}; lower --batch P")
        order = np.argsort(items.source * (items.num_variants + 2) + items.variant + 1, kind="stable")
        gen = order[items.kind[order] == GENERATED]
        # variants of each real item, in variant order
        self.variants_of = {int(s): gen[items.source[gen] == s] for s in np.unique(items.source[gen])}

    @property
    def groups_per_rank(self) -> int:
        return self.p // self.world

    def rows_per_batch(self, epoch=None) -> int:
        """Rows of this rank's batch: its P / W groups of K, twice when real images are paired."""
        return self.groups_per_rank * self.k * (2 if self.limit_at(self.epoch if epoch is None else epoch) else 1)

    def forget(self):
        """Drop the planned batches: the items' labels changed (a clustering strategy's pseudo labels; label -1,
        an item left out of every group)."""
        self._cache = None

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def limit(self):
        return self.limit_at(self.epoch)

    def limit_at(self, epoch):
        if self.variant_limit is None or self.items.num_variants == 0:
            return None
        return self.variant_limit(epoch, self.items.num_variants)

    def batches(self, epoch=None):
        epoch = self.epoch if epoch is None else epoch
        cache = self._cache if isinstance(self._cache, dict) else {}
        if epoch not in cache:
            cache = {e: b for e, b in cache.items() if e >= epoch - 1}  # this epoch and the next (RunBatches looks ahead)
            cache[epoch] = self._plan(epoch)
        self._cache = cache
        return cache[epoch]

    def _person_groups(self, rng, pool_mask) -> dict:
        """Person label -> its images shuffled and cut into groups of K (K with replacement for a smaller person)."""
        groups = {}
        for c in range(self.items.num_classes):
            members = np.flatnonzero(pool_mask & (self.items.label == c))
            if len(members) == 0:
                continue
            if len(members) < self.k:
                members = rng.choice(members, self.k, replace=True)
            members = rng.permutation(members)
            groups[c] = [members[i:i + self.k] for i in range(0, len(members) - self.k + 1, self.k)]
        return groups

    def _cal_batches(self, groups: dict, rng) -> list:
        """All groups shuffled together, cut into batches of P consecutive groups (the last partial one dropped)."""
        every = [g for c in sorted(groups) for g in groups[c]]
        every = [every[i] for i in rng.permutation(len(every))]
        return [every[i:i + self.p] for i in range(0, len(every) - self.p + 1, self.p)]

    def _bot_batches(self, groups: dict, rng) -> list:
        """P distinct persons per batch, one group each, until fewer than P persons have groups left."""
        out = []
        alive = [c for c in groups if groups[c]]
        while len(alive) >= self.p:
            chosen = rng.choice(alive, self.p, replace=False)
            out.append([groups[c].pop() for c in chosen])
            alive = [c for c in alive if groups[c]]
        return out

    def _multigallery_pass(self, rng, pool_mask) -> list:
        """One pass of Cluster Contrast's RandomMultipleGallerySampler: every person once, in a random order, as an
        anchor and K - 1 partners preferring other cameras; the groups end to end, cut into batches of P x K
        images (P slices of K), the last partial batch dropped."""
        it, k = self.items, self.k
        stream = []
        for c in rng.permutation(it.num_classes):
            members = np.flatnonzero(pool_mask & (it.label == c))
            if len(members) == 0:
                continue
            anchor = members[rng.integers(len(members))]
            others = members[self.cameras[members] != self.cameras[anchor]]
            if len(others) == 0:  # no image in another camera: any other image of the person
                others = members[members != anchor]
            stream.append([anchor])
            if len(others):
                stream.append(rng.choice(others, k - 1, replace=len(others) < k))
        flat = np.concatenate(stream) if stream else np.zeros(0, np.int64)
        size = self.p * k
        return [list(flat[i:i + size].reshape(self.p, k)) for i in range(0, len(flat) - size + 1, size)]

    def _multigallery_batches(self, epoch, pool_mask) -> list:
        """Passes seeded from (seed, epoch, pass) until ``min_batches`` batches (one pass when it is None)."""
        if self.cameras is None or len(self.cameras) != len(self.items.kind):
            raise ReidkitError("sampler 'multigallery' needs each training item's camera; it is set by the "
                               "cluster-contrast strategy (use sampler cal or bot with other strategies)")
        out = []
        for n in range(1 << 20):
            batches = self._multigallery_pass(np.random.default_rng([self.seed, epoch, n]), pool_mask)
            out += batches
            if not batches or self.min_batches is None or len(out) >= int(self.min_batches):
                break
        return out

    def _plan(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        limit = self.limit_at(epoch)
        it = self.items
        pool_mask = it.kind == REAL if limit is not None or it.num_variants == 0 else np.ones(len(it.kind), bool)
        if self.kind == "multigallery":
            planned = self._multigallery_batches(epoch, pool_mask)
        else:
            groups = self._person_groups(rng, pool_mask)
            planned = self._cal_batches(groups, rng) if self.kind == "cal" else self._bot_batches(groups, rng)
        mine = np.arange(self.rank, self.p, self.world)  # this rank's groups of every global batch
        out = []
        for batch_groups in planned:
            real = np.stack(batch_groups)  # P x K
            # drawn for the whole global batch, whatever the number of ranks: the same pairs and seeds as one process
            if limit is not None:
                # a real image without any kept variant keeps its slot as padding (~item: its own image, masked out
                # of every loss), so every batch has the same shape (2 P K) and the step can be compiled
                partner = np.array([p if p >= 0 else ~i for i, p in ((i, self._pair(i, limit, rng)) for i in real.ravel())])
                rows = np.stack([real, partner.reshape(real.shape)])  # 2 x P x K
            else:
                rows = real[None]
            seeds = rng.integers(0, 2**31 - 1, rows.size).reshape(rows.shape)
            out.append([(int(i), int(s)) for i, s in zip(rows[:, mine].ravel(), seeds[:, mine].ravel())])
        return out

    def _pair(self, item: int, limit: int, rng) -> int:
        """One generated variant of this real image, drawn uniformly from its first ``limit`` variants (-1: none)."""
        variants = self.variants_of.get(int(item))
        if variants is None or len(variants) == 0:
            return -1
        usable = variants[self.items.variant[variants] < limit]
        if len(usable) == 0:  # filters rejected the early variants: fall back to the first kept one
            usable = variants[:1]
        return int(rng.choice(usable))

    def __iter__(self):
        return iter(self.batches())

    def __len__(self):
        return len(self.batches())


class RunBatches:
    """Every batch of a run, epoch after epoch, as one batch sampler: epoch e's batches are exactly
    ``sampler.batches(e)`` (its first ``max_steps``). One DataLoader iterator then serves the whole run, and its
    workers prefetch the next epoch's first batches while an epoch ends (evaluation, checkpoint). ``skip``: steps of
    the first epoch already trained (a run resumed from a checkpoint inside an epoch)."""

    def __init__(self, sampler: IdentityBatchSampler, start_epoch: int, epochs: int, max_steps=None, skip: int = 0):
        self.sampler, self.start_epoch, self.epochs, self.max_steps = sampler, int(start_epoch), int(epochs), max_steps
        self.skip = int(skip)

    def steps(self, epoch: int) -> int:
        n = len(self.sampler.batches(epoch))
        return n if self.max_steps is None else min(n, int(self.max_steps))

    def __iter__(self):
        for epoch in range(self.start_epoch, self.epochs):
            yield from self.sampler.batches(epoch)[self.skip if epoch == self.start_epoch else 0:self.steps(epoch)]

    def __len__(self):
        return sum(self.steps(e) for e in range(self.start_epoch, self.epochs)) - self.skip
