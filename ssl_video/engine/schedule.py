"""Learning-rate schedules as pure functions of the optimizer step (nothing to save for a resume).

The factor multiplies ``optim.lr`` (and each parameter group's ``lr_scale``). ``step`` counts optimizer
updates from 0: the update numbered ``step`` uses ``lr_factor(step, ...)``.

* warm-up: linear from ``warmup_start_factor`` at step 0 to 1 at step ``warmup_steps``;
* ``cosine``: half a cosine from 1 right after the warm-up to ``final_factor`` at ``total_steps`` (the last
  update, ``total_steps - 1``, still has a small positive rate);
* ``step``: 1, multiplied by ``gamma`` at every milestone (a step number) reached;
* ``constant``: 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["lr_factor", "schedule_from_config"]


def lr_factor(step: int, total_steps: int, schedule: str = "cosine", warmup_steps: int = 0,
              warmup_start_factor: float = 0.0, final_factor: float = 0.0,
              milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    if step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** sum(1 for m in milestones if step >= m)
    if schedule == "cosine":
        span = total_steps - warmup_steps
        progress = min(1.0, (step - warmup_steps) / span) if span > 0 else 1.0
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def schedule_from_config(optim, total_steps: int, steps_per_epoch: int) -> dict:
    """Keyword arguments of :func:`lr_factor` (all in steps) for an :class:`~ssl_video.recipe.OptimConfig`."""
    per_unit = steps_per_epoch if optim.unit == "epochs" else 1
    return {
        "total_steps": total_steps,
        "schedule": optim.schedule,
        "warmup_steps": int(round(optim.warmup * per_unit)),
        "warmup_start_factor": optim.warmup_start_factor,
        "final_factor": optim.final_factor,
        "milestones": [int(round(m * per_unit)) for m in optim.milestones],
        "gamma": optim.gamma,
    }
