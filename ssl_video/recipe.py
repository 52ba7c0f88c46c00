"""The recipe schema: everything a job reads from its YAML file, as typed dataclasses.

Sections are added here as capabilities land (model, method, optimisation, trainer); unknown keys are
always an error, so a typo can never be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ssl_video.data.clip_dataset import ClipConfig

__all__ = ["DataConfig", "Recipe"]


@dataclass
class DataConfig:
    dataset: Literal["ucf101", "hmdb51", "kinetics", "folder", "synthetic"] = "synthetic"
    root: str | None = field(default=None, metadata={"path": "dir"})
    videos: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    splits: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    split: str = "1"
    subset: str | None = "train"  # None: every video of the split
    clip: ClipConfig = field(default_factory=ClipConfig)
    batch_size: int = 8  # per process
    num_workers: int = 2
    seed: int = 0


@dataclass
class Recipe:
    name: str = "unnamed"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
