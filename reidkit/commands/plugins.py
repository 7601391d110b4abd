"""``reidkit plugins [NAME]``: what is installed, what each plugin registers, and the settings each takes."""
import json

import click

from reidkit.errors import PluginError
from reidkit.plugin_manager import KIND_SINGULAR, get_plugins


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of plugins; one object with NAME) instead of text.")
def plugins(name, as_json):
    """List installed plugins (built-in and third-party) and what they register.

    NAME (a plugin's entry-point or distribution name, or a name it registers,
    e.g. dlcr) shows that plugin's registrations with every setting's default,
    type, allowed values and help.
    """
    from reidkit.cli import cli

    found = get_plugins()
    cli.list_commands(click.get_current_context())  # let plugins add their commands first
    if name is not None:
        record = _find(found, name)
        if as_json:
            click.echo(json.dumps(record.as_json(found), indent=2, default=str))
        else:  # a registered name (dlcr) shows that registration; a plugin's name shows all of them
            _show_one(found, record, None if name in (record.name, record.distribution) else name)
        return
    if as_json:
        click.echo(json.dumps([r.as_json(found) for r in found.records], indent=2, default=str))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="reidkit plugins")
    for col in ("plugin", "distribution", "version", "registers"):
        table.add_column(col)
    for r in found.records:
        if r.error:
            registers = f"[red]failed to load: {escape(r.error)}[/red]"
        else:
            registers = "\n".join(f"{k}: {', '.join(sorted(v))}" for k, v in r.registers.items() if v) or "-"
            registers += "".join(f"\n[red]refused: {escape(line)}[/red]" for line in r.refused)
        table.add_row(r.name, r.distribution + (" (built-in)" if r.builtin else ""), r.version, registers)
    Console().print(table)
    if found.failures():
        click.echo(f"{len(found.failures())} plugin(s) failed to load or had registrations refused (see above; "
                   "'reidkit plugins NAME' shows one).", err=True)


def _find(found, name):
    """The record of entry point / distribution ``name``, else of the plugin registering something called ``name``."""
    for record in found.records:
        if name in (record.name, record.distribution):
            return record
    for record in found.records:
        if any(name in names for names in record.registers.values()):
            return record
    known = ", ".join(sorted({r.name for r in found.records}))
    raise PluginError(f"no plugin or registered name '{name}' (plugins: {known}; 'reidkit plugins' lists what they register)")


def _show_one(found, record, only=None):
    where = f"{record.distribution} {record.version}" + (", built-in" if record.builtin else "")
    click.echo(f"plugin {record.name} ({where})")
    if record.error:
        click.echo(f"  failed to load: {record.error}")
    for line in record.refused:
        click.echo(f"  refused: {line}")
    settings = record.as_json(found)["settings"]
    for kind, names in record.registers.items():
        for reg in sorted(names):
            if only is not None and reg != only:
                continue
            obj = found.get(kind, reg)
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            click.echo(f"{KIND_SINGULAR[kind]} '{reg}'" + (f": {doc[0]}" if doc else ""))
            own = settings.get(kind, {}).get(reg)
            if own is None:
                continue
            if not own:
                click.echo("  (no settings)")
            for key, s in own.items():
                click.echo("  " + _setting_line(key, s))


def _setting_line(key, s) -> str:
    """``steps: int = 50 (>= 1)  denoising steps``."""
    kind = s["type"] or "any"
    if kind == "list" and s["item"]:
        kind = f"list of {s['item']}"
    allowed = []
    if s["choices"]:
        allowed.append("one of " + ", ".join(str(c) for c in s["choices"]))
    if s["min"] is not None:
        allowed.append(f"{'>' if s['min_open'] else '>='} {s['min']}")
    if s["max"] is not None:
        allowed.append(f"{'<' if s['max_open'] else '<='} {s['max']}")
    if s["nullable"]:
        allowed.append("or null")
    line = f"{key}: {kind} = {json.dumps(s['default'], default=str)}"
    if allowed:
        line += f" ({', '.join(allowed)})"
    return line + (f"  {s['help']}" if s["help"] else "")
