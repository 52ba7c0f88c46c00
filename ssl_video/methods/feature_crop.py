"""Feature Crop boxes: where STiCA slices each view's last feature map (pure helpers, no parameters)."""

from __future__ import annotations

import random
from typing import NamedTuple

import torch
from torch import Tensor

from ssl_video.recipe.methods import CROP_GROUPS, FeatureCropConfig, window_cells

__all__ = ["CropBox", "crop_boxes", "feature_crops"]


class CropBox(NamedTuple):
    """Half-open cell ranges ``[t0, t1) x [h0, h1) x [w0, w1)`` of a ``C x T x H x W`` feature map."""

    t0: int
    t1: int
    h0: int
    h1: int
    w0: int
    w1: int

    def slice(self, feature_map: Tensor) -> Tensor:
        """The crop of ``feature_map`` (``B x C x T x H x W``): a view, no copy."""
        return feature_map[:, :, self.t0:self.t1, self.h0:self.h1, self.w0:self.w1]


def _randint(rng: random.Random | torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]``, both ends included."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(low, high + 1, (1,), generator=rng))
    return rng.randint(low, high)


def _offset(rng: random.Random | torch.Generator, room: int, exclusive: bool) -> int:
    """An offset in ``[0, room]`` (inclusive) or ``[0, room - 1]`` (exclusive; 0 when ``room`` is 0)."""
    if exclusive:
        return _randint(rng, 0, room - 1) if room > 0 else 0
    return _randint(rng, 0, room)


def crop_boxes(grid: tuple[int, int, int], crops: FeatureCropConfig,
               rng: random.Random | torch.Generator) -> dict[str, list[CropBox]]:
    """Random crop boxes on a ``T x H x W`` grid, per group (:data:`CROP_GROUPS`), drawn in that order.

    ``crops.offsets``: ``inclusive`` (ours) draws offsets uniformly over every position where the window
    fits, ``0 .. size - window``; ``official`` reproduces ``get_fm_crop`` of the official ``main_stica.py``,
    ``np.random.randint(0, size - window)`` with its exclusive upper bound: ``0 .. size - window - 1`` (0
    when the window fills the axis), so 6x6 crops of a 7x7 map sit at the origin, large temporal crops start
    at 0 and small crops stay inside the large ones.
    """
    exclusive = crops.offsets == "official"
    t, h, w = (int(v) for v in grid)
    out: dict[str, list[CropBox]] = {}
    for group in CROP_GROUPS:
        kind = group.split("_")[0]
        window = getattr(crops, f"{group}_window")
        boxes = []
        for _ in range(getattr(crops, group)):
            if kind == "spatial":
                wh, ww = window_cells(window, h), window_cells(window, w)
                h0, w0 = _offset(rng, h - wh, exclusive), _offset(rng, w - ww, exclusive)
                boxes.append(CropBox(0, t, h0, h0 + wh, w0, w0 + ww))
            else:
                wt = window_cells(window, t)
                t0 = _offset(rng, t - wt, exclusive)
                boxes.append(CropBox(t0, t0 + wt, 0, h, 0, w))
        out[group] = boxes
    return out


def feature_crops(feature_map: Tensor, crops: FeatureCropConfig,
                  rng: random.Random | torch.Generator) -> dict[str, list[Tensor]]:
    """Crops of a ``B x C x T x H x W`` map, per group: plain slices at :func:`crop_boxes` positions."""
    if feature_map.ndim != 5:
        raise ValueError(f"expected a B x C x T x H x W feature map, got shape {tuple(feature_map.shape)}")
    boxes = crop_boxes(tuple(feature_map.shape[2:]), crops, rng)
    return {group: [box.slice(feature_map) for box in group_boxes] for group, group_boxes in boxes.items()}
