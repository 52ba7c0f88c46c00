"""The ``data:`` section of a recipe: which videos, and what one sample holds (``data.clip``).

One name per clip quantity everywhere (code, recipes, CLI flags, docs): ``frames`` (frames per clip),
``fps`` (the rate they are sampled at), ``resize`` (short side the decoder scales to) and ``crop``
(square side the model sees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ssl_video.config import Section, bounded
from ssl_video.errors import ConfigError

__all__ = ["ClipSampling", "VideoAugment", "AudioFeatures", "ClipConfig", "DataConfig", "DATASETS", "audio_frames"]

DATASETS = ("ucf101", "hmdb51", "kinetics", "folder", "synthetic", "tsp")


def _check_range_pair(pair: tuple[float, float], key: str, low: float, high: float | None) -> None:
    a, b = pair
    if not (low <= a <= b and (high is None or b <= high)):
        limit = f"{low:g} <= first <= second" + (f" <= {high:g}" if high is not None else "")
        raise ConfigError(key, f"expected {limit}, got [{a:g}, {b:g}]")


@dataclass
class ClipSampling(Section):
    """How a dataset picks clips from each video."""

    mode: Literal["random", "uniform", "sliding"] = "random"
    num_clips: int = bounded(1, ge=1)  # random: clips per video per visit; uniform: clips per video
    stride_seconds: float | None = bounded(None, gt=0)  # sliding: window stride (default: one clip span)
    cover_end: bool = True  # sliding: add a last padded window reaching the end


@dataclass
class VideoAugment(Section):
    """Video pipeline settings (training augmentations apply only when training)."""

    crop: int = bounded(112, ge=1)  # square side the model sees
    scale: tuple[float, float] = (0.14, 1.0)  # random resized crop: area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    color_jitter: float = bounded(0.0, ge=0, le=1)  # probability; 0 disables
    brightness: float = bounded(0.4, ge=0)
    contrast: float = bounded(0.4, ge=0)
    saturation: float = bounded(0.4, ge=0)
    hue: float = bounded(0.0, ge=0, le=0.5)
    grayscale: float = bounded(0.0, ge=0, le=1)  # probability
    blur: float = bounded(0.0, ge=0, le=1)  # probability of a Gaussian blur
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    # colour pipeline: "torchvision" (ours: jitter, grayscale and a random-sigma blur on [0, 1] frames, then
    # normalise) or "official" (GDT's clip_augmentation: normalise first, then jitter, grayscale with BGR
    # weights on the RGB channels and a fixed 11 x 11 blur of sigma 0.1 along H and 2.0 along W; no hue)
    style: Literal["torchvision", "official"] = "torchvision"

    def check(self) -> None:
        if self.style == "official" and self.hue > 0:
            raise ConfigError("hue", "the official colour pipeline has no hue jitter: set hue: 0 with style: official")
        _check_range_pair(self.scale, "scale", 0.0, 1.0)
        if self.scale[1] <= 0:
            raise ConfigError("scale", f"the largest area fraction must be > 0, got {self.scale[1]:g}")
        _check_range_pair(self.ratio, "ratio", 1e-6, None)
        if any(s <= 0 for s in self.std):
            raise ConfigError("std", f"every value must be > 0, got {list(self.std)}")


def audio_frames(features: str, seconds: float, sample_rate: int, win_seconds: float, hop_seconds: float) -> int:
    """Time frames of the features of ``seconds`` of audio: ``logmel`` (centred frames, torchaudio) gives
    ``1 + n // hop``; ``logfbank`` (frames from the first sample, the last one zero-padded, as
    python_speech_features) gives ``1 + ceil((n - win) / hop)`` (1 when ``n <= win``): 99 for 1 s at 24 kHz."""
    n = int(round(seconds * sample_rate))
    hop = int(math.floor(hop_seconds * sample_rate + 0.5))
    if features == "logmel":
        return 1 + n // hop
    win = int(math.floor(win_seconds * sample_rate + 0.5))
    return 1 if n <= win else 1 + math.ceil((n - win) / hop)


@dataclass
class AudioFeatures(Section):
    """Audio features (the audio encoders' input contract).

    ``features``: ``logmel`` (ours: torchaudio mel spectrogram, Hann window, centred frames, natural log of
    power + 1e-6) or ``logfbank`` (the official STiCA/GDT features, python_speech_features ``logfbank``:
    int16-scaled samples, pre-emphasis ``preemphasis``, rectangular window, frames from the first sample,
    power spectrum / n_fft, triangular mel filters, log; 1 x 257 x 99 for 1 s at 24 kHz).
    """

    features: Literal["logmel", "logfbank"] = "logmel"
    preemphasis: float = bounded(0.97, ge=0, lt=1)  # logfbank only
    sample_rate: int = bounded(16000, ge=1000)
    n_mels: int = bounded(64, ge=1)
    n_fft: int = bounded(512, ge=2)
    win_seconds: float = bounded(0.02, gt=0)
    hop_seconds: float = bounded(0.01, gt=0)
    f_min: float = bounded(0.0, ge=0)
    f_max: float | None = bounded(None, gt=0)
    volume_jitter: tuple[float, float] = field(default_factory=lambda: (1.0, 1.0))  # train only

    def check(self) -> None:
        if self.f_max is not None and self.f_max <= self.f_min:
            raise ConfigError("f_max", f"must be above f_min ({self.f_min:g}), got {self.f_max:g}")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ConfigError("f_max", f"is above the Nyquist frequency {self.sample_rate / 2:g}")
        _check_range_pair(self.volume_jitter, "volume_jitter", 0.0, None)

    def time_frames(self, seconds: float) -> int:
        return audio_frames(self.features, seconds, self.sample_rate, self.win_seconds, self.hop_seconds)


@dataclass
class ClipConfig(Section):
    """What one sample holds and how it is made."""

    frames: int = bounded(16, ge=1)
    fps: float = bounded(16.0, gt=0)
    resize: int = bounded(128, ge=1)  # short side the decoder scales to before cropping (resize_mode short_side)
    # short_side: scale the short side to `resize`, aspect kept (ours); fixed: scale to exactly `resize_hw`
    # (height, width), aspect not kept (official TSP: 128 x 171); native: no scaling, crops from the decoded
    # resolution (official STiCA)
    resize_mode: Literal["short_side", "fixed", "native"] = "short_side"
    resize_hw: tuple[int, int] | None = None
    sampling: ClipSampling = field(default_factory=ClipSampling)
    video: VideoAugment = field(default_factory=VideoAugment)
    audio: AudioFeatures | None = field(default_factory=AudioFeatures)
    audio_seconds: float | None = bounded(None, gt=0)  # None: the clip's own span
    # zeros: the part of the audio window outside the audio stream is silence (ours); shift: a window past the
    # stream's end moves back to end with it (official STiCA, GDT get_spec)
    audio_overrun: Literal["zeros", "shift"] = "zeros"
    views: int = bounded(1, ge=1)  # augmented views of the same decoded clip (contrastive methods use 2)
    pad: Literal["repeat", "loop"] = "repeat"
    seek_mode: Literal["exact", "approximate"] = "exact"
    # training sets only, one probe per file when the dataset is built (official STiCA: both set, 1.1 s):
    # drop videos without an audio stream (ours: kept, silent audio, out of the cross-modal term) and videos
    # whose video or audio stream lasts min_seconds or less (0: no minimum); unreadable files are dropped too
    require_audio: bool = False
    min_seconds: float = bounded(0.0, ge=0)
    # the lengths min_seconds is compared with: content (ours: the video's frames; an audio stream without a
    # length counts as long as the video) or header (official: the container's stream durations, ffprobe; a
    # stream without one drops the video)
    screen_durations: Literal["content", "header"] = "content"

    def check(self) -> None:
        if self.resize_mode == "fixed" and self.resize_hw is None:
            raise ConfigError("resize_hw", "resize_mode fixed needs the (height, width) to scale every frame to")
        if self.resize_hw is not None and min(self.resize_hw) < 1:
            raise ConfigError("resize_hw", f"expected two positive sizes, got {list(self.resize_hw)}")
        if self.views > 1 and self.sampling.num_clips > 1:
            raise ConfigError("views", f"{self.views} views of each clip cannot be combined with "
                              f"sampling.num_clips = {self.sampling.num_clips}")

    @property
    def decode_size(self) -> int | tuple[int, int] | None:
        """What the decoder scales frames to: the short side, an exact (height, width), or None (native)."""
        if self.resize_mode == "fixed":
            return (int(self.resize_hw[0]), int(self.resize_hw[1]))
        return None if self.resize_mode == "native" else self.resize


@dataclass
class DataConfig(Section):
    dataset: Literal["ucf101", "hmdb51", "kinetics", "folder", "synthetic", "tsp"] = "synthetic"
    root: str | None = field(default=None, metadata={"path": "dir"})
    videos: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    splits: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    split: str = "1"
    subset: str | None = "train"  # None: every video of the split
    clip: ClipConfig = field(default_factory=ClipConfig)
    batch_size: int = bounded(8, ge=1)  # per process
    num_workers: int = bounded(2, ge=0)
    seed: int = 0
