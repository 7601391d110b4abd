"""reidkit: generative data expansion for person re-identification.

The package import stays light (no torch): heavy libraries are imported by
the commands and plugins that need them.
"""
from reidkit._version import __version__
from reidkit.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl", "open_store"]


def open_store(path):
    """Open a reidkit store (an HDF5 file written by ``reidkit adapt``) for reading."""
    from reidkit.store import open_store as _open

    return _open(path)
