"""Errors a user can cause: one clear line, non-zero exit, no traceback."""
import click


class ReidkitError(click.ClickException):
    """A failure caused by input or environment; printed as one line, exit code 1."""

    exit_code = 1

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class StoreError(ReidkitError):
    """A store is missing, unreadable, or of another schema version."""


class PluginError(ReidkitError):
    """A plugin name is unknown, or two plugins claim the same name."""


class DatasetLayoutError(ReidkitError):
    """A benchmark folder does not have the expected layout or holds bad files."""
