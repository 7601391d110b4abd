"""Plugins that fail at import in ways that are not ordinary exceptions."""
