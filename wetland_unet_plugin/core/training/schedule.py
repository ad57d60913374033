"""The learning-rate schedules (LR_SCHEDULE) and the cosine schedule's rate by progress.

"plateau" keeps LEARNING_RATE and halves it when the validation mean IoU stalls
(Keras's ReduceLROnPlateau); "cosine" warms up linearly and then decays along a
cosine over the planned steps (EPOCHS x steps per epoch), or over the time limit
when that comes first. The Keras callback that applies ``cosine_rate`` is
``keras_parts.CosineSchedule``.
"""

from __future__ import annotations

import math

#: Cosine schedule: share of the planned steps spent warming up linearly from 0, and
#: the final learning rate as a share of LEARNING_RATE.
COSINE_WARMUP_FRACTION = 0.05
COSINE_FINAL_FACTOR = 0.01


def cosine_rate(
    progress: float,
    learning_rate: float,
    warmup_fraction: float = COSINE_WARMUP_FRACTION,
    final_factor: float = COSINE_FINAL_FACTOR,
) -> float:
    """The learning rate of the cosine schedule at ``progress`` (0..1) of the training.

    A linear warmup from 0 to ``learning_rate`` over the first ``warmup_fraction``,
    then a cosine decay to ``final_factor * learning_rate`` at progress 1:
    ``lr * (f + (1 - f) * (1 + cos(pi * (p - w) / (1 - w))) / 2)`` for p >= w.
    Progress outside [0, 1] is clipped.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    if progress < warmup_fraction:
        return learning_rate * progress / warmup_fraction
    done = (progress - warmup_fraction) / (1.0 - warmup_fraction)
    return learning_rate * (
        final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * done))
    )


def schedule_progress(
    step: int, total_steps: int, elapsed_s: float = 0.0, time_limit_s: float | None = None
) -> float:
    """Progress of training at the start of step ``step`` (0-based), for ``cosine_rate``.

    The share of the planned steps done once this step ends, (step + 1) / total_steps;
    with a time limit, the share of the time used if that is larger, so the schedule
    ends with the time limit on a slow machine.
    """
    progress = (step + 1) / max(1, total_steps)
    if time_limit_s:
        progress = max(progress, elapsed_s / time_limit_s)
    return min(progress, 1.0)
