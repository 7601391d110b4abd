"""``reidkit plugins``: what is installed and what each plugin registers."""
import json

import click

from reidkit.plugin_manager import get_plugins


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json):
    """List installed plugins (built-in and third-party) and what they register."""
    from reidkit.cli import cli

    found = get_plugins()
    cli.list_commands(click.get_current_context())  # let plugins add their commands first
    if as_json:
        click.echo(json.dumps([r.as_json() for r in found.records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="reidkit plugins")
    for col in ("plugin", "distribution", "version", "registers"):
        table.add_column(col)
    for r in found.records:
        if r.error:
            registers = f"[red]failed to load: {r.error}[/red]"
        else:
            registers = "\n".join(f"{k}: {', '.join(sorted(v))}" for k, v in r.registers.items() if v) or "-"
        table.add_row(r.name, r.distribution + (" (built-in)" if r.builtin else ""), r.version, registers)
    Console().print(table)
    if found.failures():
        click.echo(f"{len(found.failures())} plugin(s) failed to load (see above).", err=True)
