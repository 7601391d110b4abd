"""The package's structure as rules that run in CI (issue 26): the core imports no built-in plugin, no plugin
imports a command module, and reidkit's layers import only downwards: store < generation < training <
evaluation < reporting < commands. Read from the source with ast, so a deferred import inside a function
counts like one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

import reidkit  # noqa: F401

import reidkit.adapters
import reidkit.plugins

PACKAGE = Path(reidkit.__file__).parent
# installed, plugins/ and adapters/ sit inside reidkit/; in an editable install beside it
PLUGIN_DIRS = (Path(reidkit.plugins.__file__).parent, Path(reidkit.adapters.__file__).parent)
LAYERS = ("store", "generation", "training", "evaluation", "reporting", "commands")
# upward imports still to be removed (issue 26 left open): in-training evaluation reaches up into evaluation.
# A new upward import fails the test; removing one of these makes its entry stale, which fails it too.
KNOWN_UPWARD: set = set()  # none left: in-training evaluation is an evaluator the train command hands the trainer


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def core_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        if not any(folder in path.parents for folder in PLUGIN_DIRS):
            yield path.relative_to(PACKAGE), path


def test_the_core_imports_no_built_in_plugin():
    found = [(str(rel), m) for rel, path in core_files() for m in imports(path)
             if m.startswith(("reidkit.plugins", "reidkit.adapters"))]
    assert found == []


def test_no_plugin_imports_a_command_module():
    files = [path for folder in PLUGIN_DIRS for path in sorted(folder.rglob("*.py"))]
    assert len(files) > 10  # the built-in plugins and adapters were found
    found = [(path.name, m) for path in files for m in imports(path) if m.startswith("reidkit.commands")]
    assert found == []


def test_layers_import_only_downwards():
    upward = set()
    for rel, path in core_files():
        if len(rel.parts) < 2 or rel.parts[0] not in LAYERS:
            continue
        mine = LAYERS.index(rel.parts[0])
        for m in imports(path):
            parts = m.split(".")
            if parts[0] == "reidkit" and len(parts) > 1 and parts[1] in LAYERS and LAYERS.index(parts[1]) > mine:
                upward.add((rel.as_posix(), m))
    assert upward - KNOWN_UPWARD == set(), "new upward imports"
    assert KNOWN_UPWARD - upward == set(), "stale entries: remove them from KNOWN_UPWARD"


def test_the_checks_see_a_violation(tmp_path):
    # the reader finds deferred imports too (a check that cannot fail proves nothing)
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from reidkit.plugins.backbones.timm_backbone import resolve_weights\n    import reidkit.commands.eval\n")
    assert {"reidkit.plugins.backbones.timm_backbone", "reidkit.commands.eval"} <= imports(probe)
