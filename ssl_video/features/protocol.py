"""The clip protocol: which clips a video gives and how they are prepared for the encoder."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ssl_video.recipe import VideoAugment

__all__ = ["ClipProtocol"]


@dataclass(frozen=True)
class ClipProtocol:
    """``clips`` clips of ``frames`` frames at ``fps``, decoded at ``resize`` (an int: the short side; a
    (height, width): that exact size, aspect not kept, as TSP's 128 x 171), centre crop ``crop``, normalised
    with ``mean``/``std``."""

    clips: int = 10
    frames: int = 16
    fps: float = 15.0
    resize: int | tuple[int, int] = 128
    crop: int = 112
    mean: tuple[float, ...] = VideoAugment.mean
    std: tuple[float, ...] = VideoAugment.std

    @classmethod
    def for_encoder(cls, spec, **overrides) -> ClipProtocol:
        """The encoder's input contract (frames, fps, crop, resize, mean/std), then explicit overrides."""
        resize = spec.resize_size
        resize = (tuple(int(v) for v in resize) if isinstance(resize, (tuple, list))
                  else int(resize or round((spec.crop_size or 112) * 8 / 7)))
        base = cls(frames=spec.frames or 16, fps=float(spec.fps or 15.0), crop=spec.crop_size or 112,
                   resize=resize,
                   mean=tuple(spec.mean or cls.mean), std=tuple(spec.std or cls.std))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def clip_resize(self) -> dict:
        """The ``data.clip`` resize fields of this protocol."""
        if isinstance(self.resize, tuple):
            return {"resize_mode": "fixed", "resize_hw": self.resize}
        return {"resize": self.resize}

    def augment(self) -> VideoAugment:
        """The evaluation transform of this protocol (centre crop, normalisation)."""
        return VideoAugment(crop=self.crop, mean=self.mean, std=self.std)
