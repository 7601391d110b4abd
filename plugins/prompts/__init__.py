"""Built-in prompts (registered through the public register hook of this kind)."""
