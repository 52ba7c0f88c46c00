"""Video augmentation/normalisation on uint8 clips and log-mel features for audio.

Video clips arrive from the decoder as uint8 ``T x C x H x W`` (already scaled by the decoder); crops and
flips stay in uint8 (cheap), colour work happens in float after cropping, and the output is the model's
layout ``C x T x H x W`` float, normalised. One set of random parameters applies to every frame of a
clip. Randomness comes from a ``random.Random`` passed in, so a seed reproduces an augmentation.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ssl_video.recipe.data import AudioFeatures, VideoAugment

__all__ = [
    "random_resized_crop_box", "center_crop_box", "crop_resize",
    "color_jitter", "official_gray", "official_jitter", "official_blur", "official_colour", "normalize",
    "video_transform", "LogMel", "LogFbank", "fbank_matrix", "audio_features",
    "audio_transform",
]


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: random.Random) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop with area fraction in ``scale`` and aspect in ``ratio``.

    Ten tries as torchvision's RandomResizedCrop draws them; when they all fail (a crop the frame cannot
    hold, e.g. a square crop of 57% of a 16:9 frame) the crop is NOT the one fixed centred box torchvision
    falls back to (every clip of the video would train on the same pixels): the aspect is drawn again and
    the area is capped at the largest crop of that aspect the frame holds, at a random position.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    aspect = math.exp(rng.uniform(*log_ratio))
    largest = min(width * width / aspect, height * height * aspect)  # w <= width and h <= height
    high = min(area * scale[1], largest)
    target = rng.uniform(min(area * scale[0], high), high)
    w = min(width, max(1, int(math.sqrt(target * aspect))))
    h = min(height, max(1, int(math.sqrt(target / aspect))))
    return rng.randint(0, height - h), rng.randint(0, width - w), h, w


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """The centred square crop of side ``min(size, H, W)``."""
    side = min(size, height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_resize(video: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Crop ``box`` from every frame of a ``T x C x H x W`` clip and resize it to ``size x size``."""
    top, left, h, w = box
    if (h, w) == (size, size):
        return video[..., top:top + h, left:left + w]
    return TF.resized_crop(video, top, left, h, w, [size, size], antialias=True)


def color_jitter(video: torch.Tensor, cfg: VideoAugment, rng: random.Random) -> torch.Tensor:
    """Colour jitter (random order), grayscale and blur on a float clip in [0, 1]; same for all frames."""
    if cfg.color_jitter > 0 and rng.random() < cfg.color_jitter:
        ops = [
            (TF.adjust_brightness, cfg.brightness), (TF.adjust_contrast, cfg.contrast),
            (TF.adjust_saturation, cfg.saturation),
        ]
        rng.shuffle(ops)
        for op, amount in ops:
            if amount > 0:
                video = op(video, rng.uniform(max(0.0, 1 - amount), 1 + amount))
        if cfg.hue > 0:
            video = TF.adjust_hue(video, rng.uniform(-cfg.hue, cfg.hue))
    if cfg.grayscale > 0 and rng.random() < cfg.grayscale:
        video = TF.rgb_to_grayscale(video, num_output_channels=3)
    if cfg.blur > 0 and rng.random() < cfg.blur:
        side = video.shape[-1]
        kernel = max(3, int(0.1 * side) // 2 * 2 + 1)
        video = TF.gaussian_blur(video, [kernel, kernel], [rng.uniform(0.1, 2.0)] * 2)
    return video.clamp(0, 1)


# ---------------------------------------------------------------------------------------------- GDT's colour pipeline
# facebookresearch/GDT, datasets/video_transforms.py (clip_augmentation, color_jitter, grayscale, gaussian_blur):
# frames are normalised FIRST; jitter blends normalised frames; its grayscale assumes BGR channel order.

OFFICIAL_BLUR_SIZE = 11
OFFICIAL_BLUR_SIGMA = (0.1, 2.0)  # (along H, along W): kornia GaussianBlur2d((11, 11), (0.1, 2.0))


def official_gray(frames: torch.Tensor) -> torch.Tensor:
    """GDT's grayscale of ``T x C x H x W`` frames: ``0.299 c2 + 0.587 c1 + 0.114 c0`` in every channel (BGR
    weights; on our RGB frames the blue channel gets red's weight)."""
    gray = 0.299 * frames[:, 2] + 0.587 * frames[:, 1] + 0.114 * frames[:, 0]
    return gray.unsqueeze(1).expand_as(frames).contiguous()


def official_jitter(frames: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """One GDT jitter on normalised frames: ``frames * alpha + other * (1 - alpha)`` where ``other`` is zeros
    (brightness), each frame's mean gray value (contrast) or the gray frames (saturation)."""
    if kind == "brightness":
        return frames * alpha
    gray = official_gray(frames)
    if kind == "contrast":
        gray = gray.mean(dim=(1, 2, 3), keepdim=True).expand_as(frames)
    return frames * alpha + gray * (1 - alpha)


def official_blur(frames: torch.Tensor) -> torch.Tensor:
    """GDT's blur: an 11 x 11 separable Gaussian (sigma 0.1 along H, 2.0 along W), reflected borders."""
    half = OFFICIAL_BLUR_SIZE // 2
    x = torch.arange(OFFICIAL_BLUR_SIZE, dtype=frames.dtype) - half
    kernels = [torch.exp(-x.square() / (2 * sigma ** 2)) for sigma in OFFICIAL_BLUR_SIGMA]
    kernel = torch.outer(*[k / k.sum() for k in kernels])
    channels = frames.shape[1]
    padded = torch.nn.functional.pad(frames, (half, half, half, half), mode="reflect")
    weight = kernel.expand(channels, 1, OFFICIAL_BLUR_SIZE, OFFICIAL_BLUR_SIZE)
    return torch.nn.functional.conv2d(padded, weight, groups=channels)


def official_colour(frames: torch.Tensor, cfg: VideoAugment, rng: random.Random) -> torch.Tensor:
    """GDT's colour augmentation on normalised ``T x C x H x W`` frames: jitter (probability ``color_jitter``,
    brightness/contrast/saturation in random order, each ``alpha = 1 + U(-a, a)``), grayscale (probability
    ``grayscale``), blur (probability ``blur``). No clamping, as published."""
    if cfg.color_jitter > 0 and rng.random() < cfg.color_jitter:
        kinds = [(k, a) for k, a in (("brightness", cfg.brightness), ("contrast", cfg.contrast),
                                     ("saturation", cfg.saturation)) if a > 0]
        rng.shuffle(kinds)
        for kind, amount in kinds:
            frames = official_jitter(frames, kind, 1.0 + rng.uniform(-amount, amount))
    if cfg.grayscale > 0 and rng.random() < cfg.grayscale:
        frames = official_gray(frames)
    if cfg.blur > 0 and rng.random() < cfg.blur:
        frames = official_blur(frames)
    return frames


def normalize(video: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 or [0,1] float ``T x C x H x W`` -> normalised float ``C x T x H x W``."""
    if video.dtype == torch.uint8:
        video = video.float().div_(255)
    mean_t = torch.as_tensor(mean, dtype=video.dtype).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=video.dtype).view(1, -1, 1, 1)
    return ((video - mean_t) / std_t).permute(1, 0, 2, 3).contiguous()


def video_transform(video: torch.Tensor, cfg: VideoAugment, train: bool, rng: random.Random) -> torch.Tensor:
    """The whole video pipeline: crop (+flip, colour) and normalise; ``T x C x H x W`` uint8 in."""
    height, width = video.shape[-2:]
    if train:
        box = random_resized_crop_box(height, width, cfg.scale, cfg.ratio, rng)
    else:
        box = center_crop_box(height, width, cfg.crop)
    video = crop_resize(video, box, cfg.crop)
    if train and cfg.flip and rng.random() < 0.5:
        video = video.flip(-1)
    colour = train and (cfg.color_jitter > 0 or cfg.grayscale > 0 or cfg.blur > 0)
    if colour and cfg.style == "official":  # normalise first, then colour (GDT)
        frames = normalize(video, cfg.mean, cfg.std).permute(1, 0, 2, 3)
        return official_colour(frames, cfg, rng).permute(1, 0, 2, 3).contiguous()
    if colour:
        video = color_jitter(video.float().div_(255), cfg, rng)
    return normalize(video, cfg.mean, cfg.std)


class LogMel(torch.nn.Module):
    """Waveform ``(..., n)`` -> log-mel ``(..., 1, n_mels, frames)`` (natural log of power + 1e-6)."""

    def __init__(self, cfg: AudioFeatures):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=int(round(cfg.win_seconds * cfg.sample_rate)),
            hop_length=int(round(cfg.hop_seconds * cfg.sample_rate)), f_min=cfg.f_min, f_max=cfg.f_max,
            n_mels=cfg.n_mels, power=2.0, center=True,
        )

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        """The samples the features (and the volume jitter) see: the waveform in [-1, 1]."""
        return waveform

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(waveform) + 1e-6).unsqueeze(-3)


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def fbank_matrix(filters: int, n_fft: int, sample_rate: int, low: float, high: float) -> np.ndarray:
    """``filters x (n_fft // 2 + 1)`` triangular filters on FFT bins ``floor((n_fft + 1) * hz / rate)`` of
    points evenly spaced on the mel scale ``2595 log10(1 + hz / 700)`` (the python_speech_features layout;
    filters whose edges fall on one bin stay zero)."""
    points = _mel_to_hz(np.linspace(_hz_to_mel(low), _hz_to_mel(high), filters + 2))
    edges = np.floor((n_fft + 1) * points / sample_rate).astype(np.int64)
    bank = np.zeros((filters, n_fft // 2 + 1))
    bins = np.arange(n_fft // 2 + 1)
    for j in range(filters):
        a, b, c = edges[j], edges[j + 1], edges[j + 2]
        rising = (bins >= a) & (bins < b)
        falling = (bins >= b) & (bins < c)
        bank[j, rising] = (bins[rising] - a) / (b - a)
        bank[j, falling] = (c - bins[falling]) / (c - b)
    return bank


class LogFbank(torch.nn.Module):
    """Waveform ``(..., n)`` in [-1, 1] -> the official STiCA/GDT features ``(..., 1, filters, frames)``.

    python_speech_features ``logfbank`` as the official ``datasets/audio_utils.py`` calls it, on int16
    samples: ``y[0] = x[0]``, ``y[i] = x[i] - p x[i-1]``; frames of ``round_half_up(win * rate)`` samples every
    ``round_half_up(hop * rate)``, starting at the first sample, the signal zero-padded to fill the last one;
    rectangular window; power ``|rfft(frame, n_fft)|^2 / n_fft``; triangular filters (:func:`fbank_matrix`);
    exact zeros replaced by float64 eps; natural log. Computed in float64, returned as float32.
    """

    def __init__(self, cfg: AudioFeatures):
        super().__init__()
        self.win = int(math.floor(cfg.win_seconds * cfg.sample_rate + 0.5))
        self.hop = int(math.floor(cfg.hop_seconds * cfg.sample_rate + 0.5))
        self.n_fft, self.preemphasis = cfg.n_fft, cfg.preemphasis
        high = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
        bank = fbank_matrix(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min, high)
        self.register_buffer("bank", torch.from_numpy(bank), persistent=False)

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        """The samples the official code reads (FFmpeg ``pcm_s16le``): ``x * 32768`` rounded, clipped to int16."""
        return torch.round(waveform.double() * 32768.0).clamp_(-32768, 32767)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = samples.double()
        x = torch.cat([x[..., :1], x[..., 1:] - self.preemphasis * x[..., :-1]], dim=-1)
        n = x.shape[-1]
        frames = 1 if n <= self.win else 1 + math.ceil((n - self.win) / self.hop)
        padded = (frames - 1) * self.hop + self.win
        x = torch.nn.functional.pad(x, (0, padded - n))
        windows = x.unfold(-1, self.win, self.hop)  # (..., frames, win)
        power = torch.fft.rfft(windows, n=self.n_fft).abs().square() / self.n_fft
        feat = power @ self.bank.T  # (..., frames, filters)
        feat = torch.where(feat == 0, torch.full_like(feat, np.finfo(float).eps), feat)
        return torch.log(feat).transpose(-1, -2).unsqueeze(-3).float()


def audio_features(cfg: AudioFeatures) -> torch.nn.Module:
    """The feature module ``data.clip.audio.features`` names."""
    return LogFbank(cfg) if cfg.features == "logfbank" else LogMel(cfg)


def audio_transform(waveform: torch.Tensor, logmel: torch.nn.Module, cfg: AudioFeatures, train: bool,
                    rng: random.Random) -> torch.Tensor:
    """Volume jitter (training) then the features: ``(n,)`` -> ``1 x n_mels x frames``."""
    waveform = logmel.prepare(waveform)
    if train and cfg.volume_jitter != (1.0, 1.0):
        waveform = waveform * rng.uniform(*cfg.volume_jitter)
    return logmel(waveform)
