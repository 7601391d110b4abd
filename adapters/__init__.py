"""Built-in dataset adapters, registered through the public ``register_adapters`` hook.

Each adapter module stays import-light; this module only maps names to classes.
"""
from importlib import import_module

from reidkit import hookimpl

# name -> (module, class): one module per benchmark, imported when the hook runs.
BUILTIN_ADAPTERS = {
    "synthetic": ("synthetic", "SyntheticWorld"),
    "market1501": ("market1501", "Market1501"),
    "dukemtmc": ("dukemtmc", "DukeMTMC"),
    "msmt17": ("msmt17", "MSMT17"),
    "cuhk03": ("cuhk03", "CUHK03"),
    "ltcc": ("ltcc", "LTCC"),
    "prcc": ("prcc", "PRCC"),
    "vcclothes": ("vcclothes", "VCClothes"),
    "last": ("last", "LaST"),
    "ccvid": ("ccvid", "CCVID"),
    "deepchange": ("deepchange", "DeepChange"),
    "celebreid": ("celebreid", "CelebReID"),
    "folder": ("folder", "CustomFolder"),  # your own data: split folders of person folders or Market-style names
    "list": ("listfile", "CustomList"),  # your own data: a CSV/TSV list (path, pid, camera, outfit, split, tracklet)
}


@hookimpl
def register_adapters(register):
    for name, (module, attr) in BUILTIN_ADAPTERS.items():
        register(name, getattr(import_module(f"{__name__}.{module}"), attr))
