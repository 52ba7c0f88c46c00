"""Where clips come from: start times (seconds from the first frame) for a video of ``duration`` seconds.

All functions are pure; randomness comes from the ``rng`` passed in (``random.Random`` or any object
with ``uniform``). A video shorter than one clip always yields a clip at 0 (the decoder pads it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from ssl_video.recipe.data import ClipSampling

__all__ = ["clip_span", "random_start", "uniform_starts", "sliding_starts", "make_sampler"]

_EPS = 1e-9


def clip_span(num_frames: int, fps: float) -> float:
    """Seconds covered by ``num_frames`` frames at ``fps``."""
    return num_frames / fps


def random_start(duration: float, span: float, rng: random.Random) -> float:
    """One start drawn uniformly so that the clip lies inside the video (0 if it cannot)."""
    return rng.uniform(0.0, max(0.0, duration - span))


def uniform_starts(duration: float, span: float, n: int) -> list[float]:
    """``n`` evenly spaced starts from the beginning to the last full clip (one clip: the centre one)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    last = max(0.0, duration - span)
    if n == 1:
        return [last / 2]
    return [last * i / (n - 1) for i in range(n)]


def sliding_starts(duration: float, span: float, stride: float, cover_end: bool = True) -> list[float]:
    """Starts ``0, stride, 2*stride, ...`` of every full window; with ``cover_end`` one more (padded)
    window is added when the full windows leave the end of the video uncovered."""
    if stride <= 0:
        raise ValueError("stride must be > 0")
    count = max(1, math.floor((duration - span) / stride + _EPS) + 1) if duration >= span else 1
    starts = [i * stride for i in range(count)]
    if cover_end and starts[-1] + span < duration - 1e-6:
        starts.append(count * stride)
    return starts


def make_sampler(cfg: ClipSampling, span: float, rng: random.Random | None = None) -> Callable[[float], list[float]]:
    """A function ``duration -> starts`` for :func:`ssl_video.data.media.read_clips`."""
    rng = rng or random.Random()
    if cfg.mode == "random":
        return lambda duration: [random_start(duration, span, rng) for _ in range(cfg.num_clips)]
    if cfg.mode == "uniform":
        return lambda duration: uniform_starts(duration, span, cfg.num_clips)
    if cfg.mode == "sliding":
        stride = cfg.stride_seconds or span
        return lambda duration: sliding_starts(duration, span, stride, cfg.cover_end)
    raise ValueError(f"unknown clip sampling mode {cfg.mode!r}")
