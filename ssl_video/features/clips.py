"""Clips of one video, prepared exactly as an encoder expects them: for notebooks and scripts.

>>> import ssl_video
>>> encoder = ssl_video.load_encoder("encoders/x")          # doctest: +SKIP
>>> clips = ssl_video.read_clips("video.mp4", encoder)      # doctest: +SKIP
>>> clips.shape                                             # doctest: +SKIP
torch.Size([10, 3, 16, 112, 112])
>>> features = encoder(clips)                               # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_video.errors import UserError
from ssl_video.features.protocol import ClipProtocol

__all__ = ["read_clips"]


def read_clips(path: str | Path, encoder, clips: int = 10, **overrides) -> torch.Tensor:
    """Decode ``clips`` uniformly spaced clips of the video at ``path`` and transform them per ``encoder``'s
    input contract (frames, fps, resize, centre crop, mean/std): a float tensor ``clips x 3 x T x H x W``
    ready for ``encoder(...)``, the same preparation the evaluation protocols use.

    ``encoder``: a loaded encoder (``ssl_video.load_encoder`` / ``create_encoder``), its ``EncoderSpec``, or a
    reference (an exported encoder directory or a zoo name). ``overrides``: ``frames``, ``fps``, ``resize``,
    ``crop``, ``mean``, ``std`` instead of the contract's values.

    >>> read_clips("v.mp4", "r2plus1d_18", clips=2, frames=8).shape   # doctest: +SKIP
    torch.Size([2, 3, 8, 112, 112])
    """
    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets.base import VideoRecord
    from ssl_video.recipe import ClipConfig, ClipSampling

    spec = _spec(encoder)
    if spec.modality != "video":
        raise UserError(f"read_clips prepares video clips; {spec.name} is an {spec.modality} encoder")
    if clips < 1:
        raise UserError(f"clips must be at least 1, got {clips}")
    if not Path(path).is_file():
        raise UserError(f"video not found: {path}")
    protocol = ClipProtocol.for_encoder(spec, clips=clips, **overrides)
    cfg = ClipConfig(frames=protocol.frames, fps=protocol.fps, **protocol.clip_resize(),
                     sampling=ClipSampling(mode="uniform", num_clips=protocol.clips), video=protocol.augment(),
                     audio=None)
    from ssl_video.data.media import MediaError

    dataset = ClipDataset([VideoRecord(path=str(path), label=-1, video_id=str(path))], cfg, train=False)
    try:
        video = dataset.load(0, 0, 0)["video"]
    except MediaError as exc:
        raise UserError(f"cannot read {path}: {exc.reason}") from None
    return video if video.ndim == 5 else video.unsqueeze(0)


def _spec(encoder):
    from ssl_video.models.registry import EncoderSpec

    if isinstance(encoder, EncoderSpec):
        return encoder
    spec = getattr(encoder, "spec", None)
    if spec is not None:
        return spec
    if isinstance(encoder, (str, Path)):
        from ssl_video.models.io import resolve_encoder

        return resolve_encoder(encoder).model.spec
    raise UserError(f"read_clips needs an encoder, its spec or a reference, got {type(encoder).__name__}")
