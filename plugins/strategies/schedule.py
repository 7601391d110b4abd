"""Learning-rate schedule shared by the built-in strategies (linear warm-up, then steps), and what they say about
schedule points a run never reaches."""
from reidkit.training.config import SCHEDULE_HINT


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


def schedule_warnings(config: dict) -> list[str]:
    """The built-in strategies' ``schedule_warnings``: one line per schedule point the run never reaches, saying
    what it means (epochs count from 0 to epochs - 1)."""
    last = int(config["epochs"]) - 1
    hint = SCHEDULE_HINT
    out = []
    for key, what in (("clothes_start_epoch", "the clothes classifier never trains"),
                      ("adversarial_start_epoch", "the adversarial (CAL) loss never switches on")):
        if key in config and int(config[key]) > last:
            out.append(f"setting '{key}' is {config[key]} but the run's last epoch is {last}: {what} ({hint})")
    offset = int(config.get("schedule_offset") or 0)  # epoch e runs at schedule index e + offset
    late = [m for m in config.get("milestones") or [] if int(m) - offset > last]
    if late:
        out.append(f"setting 'milestones' has {late} beyond the run's last epoch {last}: those learning-rate steps never happen ({hint})")
    if int(config.get("warmup_epochs") or 0) - offset > last + 1:
        out.append(f"setting 'warmup_epochs' is {config['warmup_epochs']} but the run has {last + 1} epochs: the warm-up never ends ({hint})")
    if config.get("generated") and config.get("progress_epochs"):
        late = [t for t in config["progress_epochs"] if int(t) >= last]
        if late:
            out.append(f"setting 'progress_epochs' has {late} at or beyond the run's last epoch {last}: the variant pool never reaches "
                       f"its later fractions ({hint})")
    return out
