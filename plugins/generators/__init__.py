"""Built-in generators (registered through the public ``register_generators`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_generators(register):
    from reidkit.plugins.generators.diffusion_reid import DiffusionReidGenerator
    from reidkit.plugins.generators.dlcr import DlcrGenerator
    from reidkit.plugins.generators.recolor import RecolorGenerator

    register("dlcr", DlcrGenerator)
    register("recolor", RecolorGenerator)
    register("diffusion-reid", DiffusionReidGenerator)
