"""Built-in clothing maskers (registered through the public ``register_maskers`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_maskers(register):
    from reidkit.plugins.maskers.heuristic import HeuristicMasker
    from reidkit.plugins.maskers.parser import ParserMasker
    from reidkit.plugins.maskers.store_masks import StoreMasker

    register("heuristic", HeuristicMasker)
    register("parser", ParserMasker)
    register("store", StoreMasker)
