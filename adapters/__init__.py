"""Built-in dataset adapters, registered through the public ``register_adapters`` hook.

Each adapter module stays import-light; this module only maps names to classes.
"""
from reidkit import hookimpl


@hookimpl
def register_adapters(register):
    from reidkit.adapters.synthetic import SyntheticWorld

    register("synthetic", SyntheticWorld)
