"""Built-in generators (registered through the public ``register_generators`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_generators(register):
    from reidkit.plugins.generators.recolor import RecolorGenerator

    register("recolor", RecolorGenerator)
