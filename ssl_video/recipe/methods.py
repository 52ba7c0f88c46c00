"""The method sections of a recipe: ``stica:``, ``tsp:``, ``finetune:``.

Each section checks its own values; ``check_recipe`` checks what the method needs of the other sections
(``data.clip`` for instance). Paths that a run needs but a shipped recipe leaves for the user to fill
(``tsp.train_csv``, ``data.root``) are checked when the training set is built, not here, so that
``ssl-video config show`` works on every shipped recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_video.config import Section, bounded
from ssl_video.errors import ConfigError
from ssl_video.recipe.encoders import check_encoder_name

__all__ = ["CROP_GROUPS", "window_cells", "FeatureCropConfig", "PoolingConfig", "StiCAConfig", "TSPConfig",
           "FinetuneConfig"]

CROP_GROUPS = ("spatial_large", "spatial_small", "temporal_large", "temporal_small")


def window_cells(window: int | float, size: int) -> int:
    """Cells covered along an axis of ``size`` cells: an int is a count (capped at ``size``), a float a
    fraction (rounded half up, between 1 and ``size``)."""
    if isinstance(window, float):
        return max(1, min(size, math.floor(window * size + 0.5)))
    return max(1, min(size, int(window)))


def _check_window(value: int | float, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a cell count (int) or a fraction of the grid (float), got {value!r}")
    if isinstance(value, int) and value < 1:
        raise ConfigError(key, f"a window of cells must be at least 1, got {value}")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ConfigError(key, f"a window fraction must be in (0, 1], got {value}")


# ---------------------------------------------------------------------------------------------- STiCA


@dataclass
class FeatureCropConfig(Section):
    """How many crops of each kind each view gets, and their window sizes.

    A window is a number of feature-map cells (int; at most the grid) or a fraction of the grid (float,
    rounded half up, at least one cell). The defaults give the published windows: 6x6 and 4x4 on the 7x7
    grid; 3 and 2 of 4 time steps (6 and 4 of 8). Counts default to the official README example
    (2 large + 4 small spatial, 2 large + 1 small temporal).
    """

    spatial_large: int = bounded(2, ge=0)
    spatial_small: int = bounded(4, ge=0)
    temporal_large: int = bounded(2, ge=0)
    temporal_small: int = bounded(1, ge=0)
    spatial_large_window: int | float = 6 / 7
    spatial_small_window: int | float = 4 / 7
    temporal_large_window: int | float = 0.75
    temporal_small_window: int | float = 0.5
    pair_every_large: bool = False  # False: only the second large crops of the two views pair (published)
    # inclusive: offsets over every position where the window fits (ours); official: the official sampler's
    # exclusive upper bound (6x6 crops of a 7x7 map always at the origin, large temporal crops start at 0)
    offsets: Literal["inclusive", "official"] = "inclusive"

    def check(self) -> None:
        for name in CROP_GROUPS:
            _check_window(getattr(self, f"{name}_window"), f"{name}_window")
        if not self.pair_every_large:
            for kind in ("spatial", "temporal"):
                if getattr(self, f"{kind}_large") > 2:
                    raise ConfigError(f"{kind}_large", "the published pairing uses at most 2 large crops per kind "
                                      "(set crops.pair_every_large: true to pair every large crop)")


@dataclass
class PoolingConfig(Section):
    """Crop pooling: ``layers=0`` is global average pooling; otherwise a post-LayerNorm transformer."""

    layers: int = bounded(2, ge=0)
    heads: int = bounded(4, ge=1)
    width: int | None = bounded(None, ge=1)  # None: the video encoder's feature dimension (512 published)
    ffn: int | None = bounded(None, ge=1)  # None: 4 * width (2048 published)
    dropout: float = bounded(0.0, ge=0, lt=1)
    tokens: Literal["time", "spacetime"] = "time"  # "time": average space, attend over time (published)
    class_token: bool = False  # published: no class token, token 0 is the output
    positional: bool = False  # learned positional embedding (published: available, off)


@dataclass
class StiCAConfig(Section):
    """The ``stica:`` recipe section (defaults: the published settings where they are size-independent)."""

    video_encoder: str = "r2plus1d_18"  # zoo name or encoder directory
    video_encoder_args: dict[str, Any] = field(default_factory=dict)
    audio_encoder: str = "audio_resnet9"
    audio_encoder_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = bounded(256, ge=1)
    head_hidden: int | None = bounded(None, ge=1)  # None: the input dimension of the head (512 published)
    head_dropout: float = bounded(0.3, ge=0, lt=1)
    cross_temperature: float = bounded(0.1, gt=0)
    within_temperature: float = bounded(0.5, gt=0)
    av_weight: float = bounded(0.5, ge=0)
    crop_weight: float = bounded(0.5, ge=0)
    detach_keys: bool = True  # published: gradients through the query side only; False: through both sides
    feature_crop: bool = True  # False: no crop terms (cross-modal only)
    # True: the audio network runs once per view, each view against its own audio embedding (official
    # main_stica.py: two dropout masks, two BatchNorm updates); False: once per clip, shared by both views
    audio_per_view: bool = False
    crops: FeatureCropConfig = field(default_factory=FeatureCropConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)

    def check(self) -> None:
        check_encoder_name(self.video_encoder, "video_encoder", "video")
        check_encoder_name(self.audio_encoder, "audio_encoder", "audio")
        if self.av_weight == 0 and (self.crop_weight == 0 or not self.feature_crop):
            raise ConfigError("av_weight", "with no cross-modal and no crop term there is nothing to learn")

    def check_recipe(self, recipe) -> None:
        clip = recipe.data.clip
        if clip.sampling.num_clips != 1:
            raise ConfigError("data.clip.sampling.num_clips", "STiCA takes one clip per video (two views of it)")
        if clip.audio is None and self.av_weight > 0:
            raise ConfigError("data.clip.audio", "STiCA's cross-modal term needs audio features")


# ---------------------------------------------------------------------------------------------- TSP


@dataclass
class TSPConfig(Section):
    """The ``tsp:`` recipe section (method ``tsp``; defaults: the published ActivityNet settings)."""

    encoder: str = "r2plus1d_34"  # an encoder directory (`ssl-video import tsp ...`: Kinetics) or a zoo name
    encoder_args: dict[str, Any] = field(default_factory=dict)  # zoo constructor overrides
    allow_random_init: bool = False  # a zoo name (random weights) is refused unless this is true
    train_csv: str | None = field(default=None, metadata={"path": "file"})  # TSP ground-truth CSV
    gvf: str | None = field(default=None, metadata={"path": "file"})  # `ssl-video tsp gvf` output
    # the validation split, evaluated after every epoch (clips evenly spaced in each segment, centre crop);
    # never a test split: trainer.best_metric picks checkpoints/best.pt on it
    valid_csv: str | None = field(default=None, metadata={"path": "file"})
    valid_videos: str | None = field(default=None, metadata={"path": "dir"})  # None: data.videos
    valid_gvf: str | None = field(default=None, metadata={"path": "file"})  # None: tsp.gvf
    global_feature: Literal["gvf", "none"] = "gvf"  # what the region head sees next to the clip feature
    clips_per_segment: int = bounded(5, ge=1)  # clips per segment per epoch
    action_weight: float = bounded(1.0, ge=0)
    region_weight: float = bounded(1.0, ge=0)  # 0: TAC (action head only)
    backbone_lr_scale: float = bounded(0.05, ge=0)  # backbone lr = optim.lr x this (1e-4 with heads at 2e-3)
    freeze_stem: bool = True
    # with freeze_stem, the stem's BatchNorm statistics: frozen (ours, eval mode) or train (official: lr 0 but
    # the whole model in training mode, so they keep updating)
    stem_bn: Literal["frozen", "train"] = "frozen"
    head_init: Literal["default", "official"] = "default"  # official: weights N(0, 0.01), bias 0; default: PyTorch's
    num_classes: int = bounded(0, ge=0)  # 0: the action labels of train_csv

    def check(self) -> None:
        check_encoder_name(self.encoder, "encoder", "video")
        if self.action_weight == 0 and self.region_weight == 0:
            raise ConfigError("region_weight", "action_weight and region_weight are both 0: nothing to learn")
        if self.valid_csv is not None:
            from pathlib import PurePath

            # a test CSV, or a test videos folder (the official THUMOS14 scripts validate on VALID_SUBDIR=test)
            for key in ("valid_csv", "valid_videos"):
                value = getattr(self, key)
                if value is not None and "test" in PurePath(value).name.lower():
                    raise ConfigError(key, f"{value} looks like a test split: validation (and best.pt) must use "
                                      "a validation split")
            if self.train_csv is not None and PurePath(self.valid_csv) == PurePath(self.train_csv):
                raise ConfigError("valid_csv", "is the training CSV: give a held-out validation split")

    def check_recipe(self, recipe) -> None:
        if recipe.data.dataset != "tsp":
            raise ConfigError("data.dataset", "method tsp reads untrimmed videos: set it to 'tsp', "
                              f"got {recipe.data.dataset!r}")

    @property
    def uses_gvf(self) -> bool:
        return self.region_weight > 0 and self.global_feature == "gvf"


# ---------------------------------------------------------------------------------------------- finetune


@dataclass
class FinetuneConfig(Section):
    """Supervised classification of ``data`` with a zoo video encoder (method ``finetune``)."""

    encoder: str | None = "r2plus1d_18"  # zoo name; None: the architecture of ``init``
    encoder_args: dict[str, Any] = field(default_factory=dict)  # create_encoder overrides
    init: str | None = field(default=None, metadata={"path": "dir"})  # exported encoder dir; None: random init
    dropout: float = bounded(0.5, ge=0, lt=1)  # before the linear classifier
    backbone_lr_scale: float = bounded(0.1, ge=0)  # encoder lr = optim.lr x this (the head uses optim.lr)
    freeze_backbone: bool = False  # train the classifier only (encoder kept in eval mode)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)
    num_classes: int = bounded(0, ge=0)  # 0: the number of classes of the dataset

    def check(self) -> None:
        check_encoder_name(self.encoder, "encoder", "video")
        if self.encoder is None and self.init is None:
            raise ConfigError("encoder", "is null: name a zoo encoder or give finetune.init")

    def check_recipe(self, recipe) -> None:
        if recipe.data.clip.views != 1:
            raise ConfigError("data.clip.views", "finetune needs one augmented view per clip (views: 1)")
