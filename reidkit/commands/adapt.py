"""``reidkit adapt NAME``: one subcommand per registered adapter."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click

from reidkit.plugin_manager import get_plugins


def _common_options(adapter):
    folders = tuple(getattr(adapter, "folder_names", ()) or ())
    store_name = getattr(adapter, "store_name", "") or ""
    root_help = "The dataset folder as distributed (or the folder it was unpacked into)."
    if folders:
        root_help += f" [default: {' or '.join(folders)} in the working directory, else under $REIDKIT_DATA]"
    return [
        click.Option(
            ["--root"],
            type=click.Path(path_type=Path),
            required=adapter.needs_root and not folders,
            help=root_help,
        ),
        click.Option(["--out"], type=click.Path(path_type=Path), help="Store file to write (e.g. ltcc.h5).",
                     **({"default": store_name, "show_default": True} if store_name else {"required": True})),
        click.Option(["--force"], is_flag=True, help="Replace an existing store."),
        click.Option(["--skip-bad"], is_flag=True, help="Leave out unparseable or corrupt images (recorded in the store) instead of failing."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the written store's summary as JSON (the keys of 'reidkit info --json')."),
    ]


def check_name_length(out: Path):
    """A store's name must leave room for its sidecar folder NAME.parts (masks, prompts, runs) within the file
    system's 255-byte limit on a name; its hidden partial file is kept within the limit by store.atomic."""
    import os

    from reidkit.errors import StoreError
    from reidkit.store.atomic import NAME_MAX
    from reidkit.store.schema import PARTS_SUFFIX

    size = len(os.fsencode(Path(out).name))
    longest = NAME_MAX - len(PARTS_SUFFIX)
    if size > longest:
        raise StoreError(f"--out name is {size} bytes long; expected at most {longest} bytes (a name is at most {NAME_MAX} "
                         f"bytes and the store's sidecar folder adds '{PARTS_SUFFIX}')")


@contextlib.contextmanager
def write_progress(total, description):
    """``progress_bar``, except that on a pipe or a file a user error (bad images, a held lock) ends it without its
    '(stopped)' line: the error's one line says all there is; other failures and Ctrl-C still get it."""
    from rich.console import Console

    from reidkit.errors import ReidkitError
    from reidkit.progress import PlainProgress, progress_bar

    if not total or Console(stderr=True).is_terminal:
        with progress_bar(total, description) as update:
            yield update
        return
    plain = PlainProgress(total, description, "img")
    try:
        yield plain.update
    except ReidkitError:
        raise
    except BaseException:
        plain.finish(stopped=True)
        raise
    plain.finish()


def run_adapt(name, adapter_cls, root, out, force, skip_bad, settings, as_json=False):
    from reidkit.errors import StoreError
    from reidkit.store.writer import check_output, check_scan_problems, write_store

    check_name_length(out)
    check_output(out, force)  # before scanning: a wrong --out fails at once
    if not Path(out).parent.is_dir():
        raise StoreError(f"the folder of --out is not a folder: {Path(out).parent} is a file; expected --out in a folder")
    if root is None and adapter_cls.needs_root and getattr(adapter_cls, "folder_names", ()):
        from reidkit.adapter import find_distributed_folder

        root = find_distributed_folder(adapter_cls)
        click.echo(f"Reading {root}", err=True)
    adapter = adapter_cls()
    layout = adapter.scan(root, dict(settings))
    layout.settings = {**dict(settings), **layout.settings, "adapter": name, "root": str(root) if root else None}
    check_scan_problems(layout, skip_bad)  # before the progress bar: a bad layout fails in one line
    total = layout.total if layout.total is not None else (len(layout.records) if hasattr(layout.records, "__len__") else None)
    with write_progress(total, f"adapt {name}") as update:
        summary = write_store(out, layout, force=force, skip_bad=skip_bad, progress=lambda n: update(completed=n))
    click.echo(f"Wrote {summary.path} ({summary.images} images, fingerprint {summary.fingerprint})", err=True)
    if summary.skipped:
        click.echo(f"Skipped {len(summary.skipped)} bad items (recorded in the store; see 'reidkit info --json')", err=True)
    from reidkit.commands.info import print_summary
    from reidkit.store import open_store

    if as_json:
        from reidkit.json_output import emit
        from reidkit.store.summary import store_summary

        emit(store_summary(open_store(summary.path)))
    else:
        print_summary(open_store(summary.path))


def build_adapter_command(name, adapter_cls):
    def callback(root, out, force, skip_bad, as_json, **settings):
        run_adapt(name, adapter_cls, root, out, force, skip_bad, settings, as_json)

    return click.Command(
        name,
        params=_common_options(adapter_cls) + [_copy_option(o) for o in getattr(adapter_cls, "options", [])],
        callback=callback,
        help=getattr(adapter_cls, "__doc__", None) or adapter_cls.summary,
        short_help=getattr(adapter_cls, "summary", ""),
    )


def _copy_option(option):
    # click parameters are bound to one command; adapters declare them once at class level.
    import copy

    return copy.copy(option)


class AdaptGroup(click.Group):
    def list_commands(self, ctx):
        return get_plugins().names("adapters")

    def get_command(self, ctx, name):
        plugins = get_plugins()
        if name not in plugins.names("adapters"):
            return None
        return build_adapter_command(name, plugins.get("adapters", name))

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            import difflib

            from reidkit.errors import PluginError

            known = get_plugins().names("adapters")
            close = difflib.get_close_matches(args[0], known, n=1, cutoff=0.6)
            if close:
                raise PluginError(f"unknown adapter '{args[0]}'. Did you mean '{close[0]}'? (known: {', '.join(known)})")
            get_plugins().get("adapters", args[0])  # raises: unknown adapter, with the known names
        return super().resolve_command(ctx, args)


@click.group(cls=AdaptGroup)
def adapt():
    """Turn a benchmark (or the synthetic world) into a store.

    \b
    Examples:
      reidkit adapt synthetic --out world.h5
      reidkit adapt ltcc                      # ./LTCC_ReID or $REIDKIT_DATA/LTCC_ReID -> ./ltcc.h5
      reidkit adapt ltcc --root ~/data/LTCC_ReID --out ltcc.h5
    """
