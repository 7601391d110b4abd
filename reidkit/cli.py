"""The ``reidkit`` command line: a lazy click group (``reidkit --help`` imports no torch)."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys

import click

from reidkit._version import __version__
from reidkit.errors import DiskFullError, ReidkitError, disk_full_path, is_disk_full
from reidkit.interrupts import TERMINATED, sigterm_as_interrupt

# name -> (module, attribute, one-line help). A command shows up once its module exists.
BUILTIN_COMMANDS = {
    "adapt": ("reidkit.commands.adapt", "adapt", "Turn a benchmark folder (or the synthetic world) into a store."),
    "info": ("reidkit.commands.info", "info", "Summarise a store: splits, ids, cameras, outfits, protocols."),
    "plugins": ("reidkit.commands.plugins", "plugins", "List installed plugins and what they register."),
    "mask": ("reidkit.commands.mask", "mask", "Compute clothing masks for a store's images."),
    "expand": ("reidkit.commands.expand", "expand", "Generate new training images into a store (a generated run)."),
    "show": ("reidkit.commands.show", "show", "Contact sheet of originals and their generated variants."),
    "train": ("reidkit.commands.train", "train", "Train a Re-ID model on a store and its generated runs."),
    "eval": ("reidkit.commands.eval", "eval_command", "Evaluate features or a checkpoint with the store's protocols."),
    "pretrain-store": ("reidkit.commands.pretrain_store", "pretrain_store", "Build a pre-training store from generated runs (leakage-guarded)."),
    "demo": ("reidkit.commands.demo", "demo", "Run the whole story on the synthetic world, no downloads."),
    "export": ("reidkit.commands.export", "export", "Export a trained run's feature extractor (ONNX)."),
    "import-checkpoint": ("reidkit.commands.import_checkpoint", "import_checkpoint",
                          "A CAL/DLCR, BoT, fast-reid or torchreid checkpoint as a reidkit run."),
    "compact": ("reidkit.commands.compact", "compact", "Rewrite a finished generated run into one chunk file (atomic)."),
    "report": ("reidkit.commands.report", "report", "One HTML page per training run (or comparing runs): curves, results, images."),
    "import-dlcr": ("reidkit.commands.import_dlcr", "import_dlcr", "Import DLCR's released generated images as a generated run."),
    "audit": ("reidkit.commands.audit", "audit", "Measure a generated run: identity kept, change outside the mask, diversity."),
}


def debug_enabled() -> bool:
    return os.environ.get("REIDKIT_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:2]


class ReidkitGroup(click.Group):
    """Built-in commands import on demand; plugin commands come from ``register_commands``."""

    _plugin_commands_added = False

    def _available_builtins(self):
        return [name for name, (module, _, _) in BUILTIN_COMMANDS.items() if importlib.util.find_spec(module) is not None]

    def _add_plugin_commands(self):
        if not self._plugin_commands_added:
            self._plugin_commands_added = True
            from reidkit.plugin_manager import get_plugins

            get_plugins().add_commands(self)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return sorted(set(self._available_builtins()) | set(self.commands))

    def get_command(self, ctx, name):
        if name in BUILTIN_COMMANDS and name not in self.commands:
            module, attr, _ = BUILTIN_COMMANDS[name]
            if importlib.util.find_spec(module) is not None:
                return getattr(importlib.import_module(module), attr)
        self._add_plugin_commands()
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        # Help text from the table, so listing commands imports none of them.
        rows = []
        for name in self.list_commands(ctx):
            if name in BUILTIN_COMMANDS and name not in self.commands:
                rows.append((name, BUILTIN_COMMANDS[name][2]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(limit=80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            commands = self.list_commands(ctx)
            close = difflib.get_close_matches(name, commands, n=1, cutoff=0.6)
            if close:
                raise click.UsageError(f"No such command '{name}'. Did you mean '{close[0]}'?", ctx)
            raise click.UsageError(f"No such command '{name}' (commands: {', '.join(commands)})", ctx)
        return super().resolve_command(ctx, args)


# auto_envvar_prefix: every option also reads REIDKIT_<COMMAND>_<OPTION> (e.g. REIDKIT_TRAIN_EPOCHS=60)
@click.group(cls=ReidkitGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "REIDKIT"})
@click.version_option(__version__, prog_name="reidkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks (also: REIDKIT_DEBUG=1).")
def cli(debug):
    """reidkit: more and better training data for person re-identification.

    \b
    Pipeline: adapt -> (mask) -> expand -> train -> eval
    Shell completion (bash): eval "$(_REIDKIT_COMPLETE=bash_source reidkit)"
    """
    if debug:
        os.environ["REIDKIT_DEBUG"] = "1"


_HIDDEN_TRACE = re.compile(r"\s*[^.()]*\b(?:stack\s?trace|traceback)\b[^.()]*\babove\b[^.()]*\.?", re.IGNORECASE)


def without_hidden_trace(message: str) -> str:
    """A library's message less its sentences pointing to a stack trace 'above': reidkit shows none."""
    return _HIDDEN_TRACE.sub("", message).strip()


class _OfflineHubNote(logging.Filter):
    """Drops the hub libraries' 'Couldn't connect to the Hub ... will try the local cache' notes when HF_HUB_OFFLINE
    asks for exactly that: a missing model then fails in one line of reidkit's, not three."""

    def filter(self, record):
        return not (os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
                    and str(record.msg).startswith("Couldn't connect to the Hub"))


def _quiet_offline_hub_notes():
    for name in ("diffusers.pipelines.pipeline_utils", "transformers.utils.hub", "transformers.modeling_utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OfflineHubNote) for f in logger.filters):
            logger.addFilter(_OfflineHubNote())


# What a Ctrl-C leaves behind, per command (the exit line says so); commands not listed say only "Interrupted."
INTERRUPTED = {
    "adapt": "Interrupted: no store was written (a store appears only once complete); rerun the same command to start again.",
    "train": "Interrupted: the run folder keeps its last finished checkpoint; rerun the same command with --resume to continue.",
    "expand": "Interrupted: finished work is kept; rerun the same command to resume.",
    "mask": "Interrupted: finished work is kept; rerun the same command to resume.",
    "import-dlcr": "Interrupted: finished chunks are kept; rerun the same command to resume.",
}


def interrupted_message(args, terminated: bool = False) -> str:
    """The exit line after Ctrl-C (or SIGTERM) for the command named in ``args`` (the first word that is not an option)."""
    name = next((str(a) for a in args if not str(a).startswith("-")), None)
    line = INTERRUPTED.get(name, "Interrupted.")
    return line.replace("Interrupted", "Stopped by SIGTERM", 1) if terminated else line


# What to do after a write failed for lack of space, per command (what was written before is intact).
DISK_FULL = {
    "adapt": "free space and rerun the same command (no store was written; a store already there is unchanged)",
    "train": "free space and rerun the same command with --resume (the run keeps its last finished checkpoint)",
    "expand": "free space and rerun the same command to resume (finished chunks are kept)",
    "mask": "free space and rerun the same command to resume (finished chunks are kept)",
    "compact": "free space and rerun the same command (the run is unchanged until the compacted chunk is whole)",
}


def disk_full_message(exc, args) -> str:
    """The one line after a write failed for lack of space: what was being written, and what to do."""
    name = next((str(a) for a in args if not str(a).startswith("-")), None)
    advice = DISK_FULL.get(name, "free space and rerun the same command")
    return f"no space left on device writing {disk_full_path(exc, 'its output')}: {advice}"


def main(argv=None):
    """Console entry point: exit 0 success, 1 failure, 2 usage error; one line per error."""
    if not debug_enabled():
        _quiet_offline_hub_notes()
        # OpenCV logs its decoders' failures on stderr itself; reidkit reports a bad image in its own one line
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    sigterm_as_interrupt()  # a scheduler's SIGTERM stops at the same safe points as Ctrl-C, with the same one line
    try:
        cli.main(args=argv, prog_name="reidkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if debug_enabled():
            raise
        if isinstance(exc, DiskFullError):
            exc.message = disk_full_message(exc, sys.argv[1:] if argv is None else argv)
        elif isinstance(exc, ReidkitError):
            exc.message = without_hidden_trace(exc.message)
        if type(exc) in (click.UsageError, click.BadParameter, click.MissingParameter, click.BadOptionUsage,
                         click.BadArgumentUsage, click.NoSuchOption):
            # one line, not click's usage block: what was wrong, and where the help is
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(interrupted_message(sys.argv[1:] if argv is None else argv, TERMINATED.is_set()), err=True)
        sys.exit(143 if TERMINATED.is_set() else 130)
    except Exception as exc:
        if debug_enabled():
            raise
        if is_disk_full(exc):  # a write that no command named: the file, where the error says it
            click.echo(f"Error: {disk_full_message(exc, sys.argv[1:] if argv is None else argv)}", err=True)
            sys.exit(1)
        message = without_hidden_trace(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        click.echo(f"Error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
