"""Generative expansion: masks, clothing banks and generated runs, with plugins doing the work.

Library entry points (the CLI commands are thin wrappers around them):
``run_expand`` (``reidkit expand``), ``run_mask`` (``reidkit mask``),
``merge_run`` (``reidkit expand --merge``). Contracts for plugin authors:
``reidkit.generation.contracts``.
"""
from reidkit.generation.engine import run_expand
from reidkit.generation.masking import ensure_masks as run_mask
from reidkit.generation.merge import merge_run

__all__ = ["run_expand", "run_mask", "merge_run"]
