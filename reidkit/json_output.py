"""``--json``: a command's result as one JSON object on stdout (messages stay on stderr); keys in docs/cli.md."""
from __future__ import annotations

import json

import click

JSON_HELP = "Print the result as one JSON object on stdout (keys: docs/cli.md). [default: off]"


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)


def emit(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def say(message: str, as_json: bool) -> None:
    """A human line: stdout normally, stderr under --json so stdout stays one JSON object."""
    click.echo(message, err=as_json)
