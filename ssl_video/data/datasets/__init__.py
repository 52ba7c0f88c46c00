"""Dataset formats: each module parses one on-disk layout into a :class:`DatasetLayout`."""

from __future__ import annotations

import importlib

from ssl_video.data.datasets.base import DatasetLayout, VideoRecord
from ssl_video.errors import UserError

FORMATS = ("ucf101", "hmdb51", "kinetics", "folder", "synthetic")

__all__ = ["FORMATS", "load_layout", "DatasetLayout", "VideoRecord"]


def load_layout(name: str, root: str | None = None, videos: str | None = None,
                splits: str | None = None) -> DatasetLayout:
    """Parse dataset ``name`` from ``root`` (official layout) or explicit ``videos``/``splits`` dirs."""
    if name not in FORMATS:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(FORMATS)})")
    module = importlib.import_module(f"ssl_video.data.datasets.{name}")
    return module.load(root=root, videos=videos, splits=splits)
