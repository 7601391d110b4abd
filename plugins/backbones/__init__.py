"""Built-in backbones (registered through the public register hook of this kind)."""
