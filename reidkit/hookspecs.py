"""Hook specifications: the only way anything (built-in or third-party) extends reidkit.

A plugin is a module (or object) named by an entry point in the ``reidkit``
group. It implements any of the hooks below with ``@reidkit.hookimpl``. Every
``register_*`` hook receives a ``register(name, obj)`` callback; ``obj`` is
what the stage will use (usually a class), and ``name`` is what users type on
the command line. ``obj`` is checked against its kind's contract
(``reidkit.contracts.CONTRACTS``: required methods, declared settings) as it
is registered; one that breaks it is refused in one line naming the plugin
and what is missing, and the plugin's other registrations still load.
Keep plugin modules light: import torch, diffusers or
transformers inside the registered objects' methods, not at module level,
so that ``reidkit --help`` stays instant.
"""
import pluggy

hookspec = pluggy.HookspecMarker("reidkit")
hookimpl = pluggy.HookimplMarker("reidkit")


@hookspec
def register_adapters(register):
    """Register dataset adapters: ``register("market1501", Market1501Adapter)``.

    An adapter turns a benchmark folder (or nothing, for generated worlds)
    into image records, splits and evaluation protocols; see
    ``reidkit.adapter.Adapter`` for the contract. It becomes
    ``reidkit adapt NAME``.
    """


@hookspec
def register_maskers(register):
    """Register clothing maskers: objects that label clothing pixels per image.

    Contract: ``reidkit.generation.contracts.Masker``. Used by ``reidkit mask`` and by
    ``reidkit expand`` when a store has no masks yet.
    """


@hookspec
def register_prompt_sources(register):
    """Register clothing prompt sources: objects that build a clothing bank
    (one list of clothing items per clothes id). Contract:
    ``reidkit.generation.contracts.PromptSource``."""


@hookspec
def register_generators(register):
    """Register image generators (``reidkit expand --generator NAME``).

    Contract: ``reidkit.generation.contracts.Generator``: given source images, masks,
    prompts and per-item seeds, return generated images.
    """


@hookspec
def register_filters(register):
    """Register filters that score generated images and keep or reject them.
    Contract: ``reidkit.generation.contracts.Filter``."""


@hookspec
def register_backbones(register):
    """Register Re-ID backbones (feature extractors) for ``reidkit train --backbone NAME``.

    Contract: ``reidkit.training.contracts.Backbone``: ``register("timm", factory)``
    where ``factory(**settings)`` returns the module (built-in: ``timm``).
    """


@hookspec
def register_strategies(register):
    """Register training strategies (``reidkit train --strategy NAME``; ``--plugin`` is an alias), e.g.
    baseline, cal, progressive, pretrain.

    Contract: ``reidkit.training.contracts.Strategy``: ``register("cal", CalStrategy)``
    where ``CalStrategy(settings)`` builds heads, losses and the schedule.
    """


@hookspec
def register_commands(cli):
    """Add click commands to the ``reidkit`` group: ``cli.add_command(my_command)``.

    Keep the command module light; import heavy libraries inside the
    command's function body.
    """
