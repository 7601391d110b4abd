"""Built-in filters (registered through the public register hook of this kind)."""
