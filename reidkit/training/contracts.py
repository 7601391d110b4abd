"""Contracts of the two training plugin kinds: backbones and strategies.

Plugins register *factories* (usually classes) through ``register_backbones``
and ``register_strategies``; the engine calls them with settings dictionaries.
Torch is only needed once a factory is called. A strategy class missing one of
the required methods below is refused at registration
(``reidkit.contracts.CONTRACTS["strategies"]``); the engine reads the optional
ones only through that contract, which also states what their absence means.
A strategy may declare its settings' types, ranges and help in
``settings_spec`` (``reidkit.contracts.Setting``), shown by ``reidkit plugins``.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor with its Re-ID neck, built by ``factory(**settings)``.

    It is a ``torch.nn.Module`` with ``feature_dim`` (int) whose
    ``forward(images)`` takes an N x 3 x H x W float batch (ImageNet-normalised)
    and returns ``(features, bn_features)``: the pooled (and projected)
    embedding used by metric losses, and the same after the BNNeck, used by
    classifiers and at test time. Optional, needed for video training
    (``clip_len > 0``): ``features(images)`` (the pooled embedding, before the
    neck) and ``neck(features)``, so a clip's frame features can be averaged
    over time before the neck.

    The factory's named parameters are the backbone's settings (a setting it
    does not take is refused in one line before training; a factory with
    ``**kwargs`` takes any). Optional on the factory: ``resolve_weights(settings)``
    -> what its ``weights`` setting loads (a hub tag, a file), recorded in
    config.yaml as ``backbone.resolved_weights``; ``settings_spec``, a dict of
    ``reidkit.contracts.Setting`` checking its values (else each parameter's
    default gives the type).
    """

    feature_dim: int

    def forward(self, images: Any) -> tuple[Any, Any]: ...


class StrategyBase:
    """A start for a strategy: built with the run's settings, reidkit's defaults for everything it does not change
    (COMMON), a constant learning rate and no generated-image pairing. Write ``build_heads`` and ``loss`` (a class
    without them is still refused at registration); override ``lr_factor`` / ``variant_limit`` for a schedule."""

    defaults: dict = {}

    def __init__(self, settings: dict):
        self.settings = settings

    def lr_factor(self, epoch: int) -> float:
        return 1.0

    def variant_limit(self, epoch: int, num_variants: int):
        return None  # generated images, if any, are plain extra images of their person


@runtime_checkable
class Strategy(Protocol):
    """How a model is trained: its heads, its losses, its schedule, its data mix.

    Built by ``factory(settings)`` where ``settings`` is the full training
    configuration (the strategy's own ``defaults`` merged with the user's).

    - ``defaults``: class-level dict of paper settings (epochs, lr, milestones,
      batch, image size, backbone options, loss weights), over reidkit's COMMON.
    - ``build_heads(feature_dim, num_classes, num_clothes, clothes_of_class)``
      returns an ``nn.Module`` whose ``forward(features, bn_features)`` returns a
      dict of outputs (at least ``logits``); it is trained with the backbone.
    - ``loss(outputs, batch, epoch)`` -> ``(total_loss, {name: value})``, each
      value a detached 0-d tensor (summed on the device, read back every
      ``log_every_steps`` steps: no host sync per step) or a float.
      ``batch`` has ``image`` (normalised float, erased), ``label``,
      ``clothes`` (-1 for generated images and padding rows), ``generated``
      and ``valid`` tensors; rows with ``valid`` false are padding (a paired
      batch keeps its shape) and must count in no loss (the built-in losses
      take it as ``valid=``).
    - ``lr_factor(epoch)``: multiplier of the base learning rate (warm-up, steps).
    - ``variant_limit(epoch, num_variants)``: how many variants of each real
      image may be drawn this epoch, or ``None`` when generated images are not
      paired with their sources (they are then plain extra training images).

    Optional (the engine treats a strategy without them as having none):

    - ``separate_optimizers(heads)`` -> ``{name: {"params": [...], "lr": float,
      "weight_decay": float}}``: parameters trained by their own Adam at a
      constant rate instead of the main optimiser (CAL's clothes classifier).
    - ``auxiliary_losses(outputs, batch, epoch)`` -> ``{name: loss}``: each is
      stepped on the separate optimiser of the same name, before ``loss`` is
      computed, so ``loss`` sees the updated parameters (CAL's order).
    - ``on_checkpoint(out, model, config, epoch)``: called after each saved
      checkpoint (pretrain exports its backbone).
    - ``hooks(trainer)`` -> a list of ``reidkit.training.hooks.Hook`` objects,
      called after the engine's own (before_train, before_epoch(epoch),
      after_step, after_epoch(epoch), after_train), e.g. to re-cluster
      pseudo-labels at the start of an epoch.
    - ``defaults_for(base)`` (static) and ``needs_generated`` (class attribute):
      defaults that depend on a base strategy, and whether ``--generated`` is
      required (progressive).
    - ``epoch_settings`` (class attribute): the names of settings that are
      epochs (0-based) or lists of them: ``scale_schedule`` scales them and a
      value past the run's last epoch is warned about; ``schedule_warnings(config)``
      (static) words those warnings itself.
    - ``resumable_settings`` (class attribute): its settings that may change on
      ``--resume`` (beside reidkit's own: epochs, device, workers, ...).

    Every setting the engine reads (epochs, lr, weight_decay, ids_per_batch,
    images_per_id, height, width, sampler, augment, test_flip, backbone, ...)
    has reidkit's default (``reidkit.training.config.COMMON``: BoT's run), so
    ``defaults`` needs only what the strategy changes.
    """

    defaults: dict

    def build_heads(self, feature_dim: int, num_classes: int, num_clothes: int, clothes_of_class: list) -> Any: ...

    def loss(self, outputs: dict, batch: dict, epoch: int) -> tuple[Any, dict]: ...

    def lr_factor(self, epoch: int) -> float: ...

    def variant_limit(self, epoch: int, num_variants: int) -> int | None: ...
