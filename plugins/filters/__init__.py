"""Built-in filters (registered through the public ``register_filters`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_filters(register):
    from reidkit.plugins.filters.reid_confidence import ReidConfidenceFilter
    from reidkit.plugins.filters.sanity import SanityFilter

    register("reid-confidence", ReidConfidenceFilter)
    register("sanity", SanityFilter)
