"""Training: data, strategies, engine, checkpoints, inference."""
