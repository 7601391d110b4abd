"""Learning-rate schedule shared by the built-in strategies: linear warm-up, then steps."""


def warmup_step_factor(epoch: int, warmup_epochs=0, warmup_factor=0.1, milestones=(), gamma=0.1, offset=0) -> float:
    """The factor of 0-based ``epoch``, read at schedule index ``epoch + offset``: WarmupMultiStepLR's
    ``warmup_factor * (1 - a) + a`` with ``a = index / warmup_epochs`` while ``index < warmup_epochs``, times
    ``gamma`` per milestone ``<= index``. BoT steps its scheduler at the start of every epoch, so its first epoch
    already runs at index 1 (``offset`` 1); CAL steps at the end (``offset`` 0)."""
    index = epoch + offset
    factor = gamma ** sum(index >= m for m in milestones)
    if warmup_epochs and index < warmup_epochs:
        alpha = index / warmup_epochs
        factor *= warmup_factor * (1 - alpha) + alpha
    return float(factor)
