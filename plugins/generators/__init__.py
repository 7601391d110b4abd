"""Built-in generators (registered through the public register hook of this kind)."""
