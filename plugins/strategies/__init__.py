"""Built-in strategies (registered through the public register hook of this kind)."""
