"""Built-in maskers (registered through the public register hook of this kind)."""
