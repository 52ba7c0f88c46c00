"""The shared training loop (:mod:`~ssl_video.engine.trainer`), its checkpoints, run directory, schedules and
local multi-process launching. Importing this package is cheap; :func:`train` loads torch on first use."""

from __future__ import annotations

__all__ = ["train"]


def train(recipe, run_dir, recipe_path=None, **kwargs) -> dict:
    """See :func:`ssl_video.engine.trainer.train`."""
    from ssl_video.engine.trainer import train as _train

    return _train(recipe, run_dir, recipe_path=recipe_path, **kwargs)
