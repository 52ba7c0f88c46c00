"""The synthetic audio-visual dataset (``ssl-video data synth``): the UCF101 layout with mp4 files."""

from __future__ import annotations

from pathlib import Path

from ssl_video.data.datasets import ucf101
from ssl_video.data.datasets.base import DatasetLayout
from ssl_video.errors import UserError


def load(root: str | None = None, videos: str | None = None, splits: str | None = None,
         names: dict[str, str] | None = None) -> DatasetLayout:
    if root is not None and videos is None and not (Path(root) / "UCF-101").is_dir():
        raise UserError(f"synthetic: no dataset at {root} (write one with: ssl-video data synth {root})")
    layout = ucf101.load(root, videos, splits, names=names, dataset="synthetic")
    layout.name = "synthetic"
    return layout
