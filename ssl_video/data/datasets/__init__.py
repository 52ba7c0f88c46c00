"""Dataset formats: each module parses one on-disk layout into a :class:`DatasetLayout`."""

from __future__ import annotations

import importlib

from ssl_video.data.datasets.base import CHECK_FLAGS, EVAL_FLAGS, RECIPE_NAMES, DatasetLayout, VideoRecord
from ssl_video.errors import UserError

FORMATS = ("ucf101", "hmdb51", "kinetics", "folder", "synthetic")

__all__ = ["FORMATS", "load_layout", "DatasetLayout", "VideoRecord", "RECIPE_NAMES", "CHECK_FLAGS", "EVAL_FLAGS"]


def load_layout(name: str, root: str | None = None, videos: str | None = None,
                splits: str | None = None, names: dict[str, str] | None = None) -> DatasetLayout:
    """Parse dataset ``name`` from ``root`` (official layout) or explicit ``videos``/``splits`` dirs.

    ``names``: how the caller spells the three locations in its messages (:data:`RECIPE_NAMES` by default;
    :data:`CHECK_FLAGS` and :data:`EVAL_FLAGS` for the commands), so that a hint names options that exist.
    """
    if name not in FORMATS:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(FORMATS)})")
    module = importlib.import_module(f"ssl_video.data.datasets.{name}")
    return module.load(root=root, videos=videos, splits=splits, names={**RECIPE_NAMES, **(names or {})})
