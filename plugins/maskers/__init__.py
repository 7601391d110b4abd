"""Built-in clothing maskers (registered through the public ``register_maskers`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_maskers(register):
    from reidkit.plugins.maskers.store_masks import StoreMasker

    register("store", StoreMasker)
