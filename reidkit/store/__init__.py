"""The HDF5 store every stage shares. Schema: docs/store.md."""
from reidkit.store.reader import Store, open_store, parts_dir_of
from reidkit.store.schema import SCHEMA_VERSION

__all__ = ["Store", "open_store", "parts_dir_of", "SCHEMA_VERSION"]
