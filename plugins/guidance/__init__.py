"""DLCR's discriminator guidance (methods.md 1.3): ``reidkit discriminator train`` and the dlcr generator's second pass.

Registered through the public ``register_commands`` hook, like a third-party plugin's command.
"""
from reidkit import hookimpl


@hookimpl
def register_commands(cli):
    from reidkit.plugins.guidance.command import discriminator

    cli.add_command(discriminator)
