"""Learning-rate schedule shared by the built-in strategies: linear warm-up, then steps."""


def warmup_step_factor(epoch: int, warmup_epochs=0, warmup_factor=0.1, milestones=(), gamma=0.1) -> float:
    factor = gamma ** sum(epoch >= m for m in milestones)
    if warmup_epochs and epoch < warmup_epochs:
        factor *= warmup_factor + (1 - warmup_factor) * epoch / warmup_epochs
    return float(factor)
