"""``timm:<name>``: any 2-D timm model as a video or audio encoder.

Video (the default): the model runs on every frame (TSN-style) and the feature maps are stacked back along
time, ``B x 3 x T x H x W`` -> ``B x C x T x H' x W'``. Audio (``modality="audio"``): the model takes the
log-mel spectrogram as a 1-channel image, ``B x 1 x F x T`` -> ``B x C x F' x T'``. The last feature map
comes from timm's ``features_only`` interface, always channels-first. Weights are never downloaded
(``pretrained=False``); other keyword overrides go to ``timm.create_model`` (e.g. ``img_size=112`` for a ViT).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from ssl_video.errors import UserError, one_line
from ssl_video.models.registry import TIMM_PREFIX, Encoder, EncoderEntry, register_prefix

__all__ = ["TimmEncoder", "timm_entry", "build_timm_encoder"]

_RESERVED = ("features_only", "out_indices", "in_chans", "num_classes")


class TimmEncoder(Encoder):
    """Wraps a timm ``features_only`` network; ``net`` holds all of its parameters."""

    def __init__(self, net: nn.Module, modality: str):
        super().__init__()
        self.net = net
        self.modality = modality
        self.channels_last = str(getattr(getattr(net, "output_fmt", None), "value", "NCHW")) == "NHWC"

    def _last_map(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(images)[-1]
        return out.permute(0, 3, 1, 2) if self.channels_last else out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "audio":
            return self._last_map(x)
        batch, channels, frames, height, width = x.shape
        maps = self._last_map(x.transpose(1, 2).reshape(batch * frames, channels, height, width))
        return maps.reshape(batch, frames, *maps.shape[1:]).transpose(1, 2)


def build_timm_encoder(model_name: str, modality: str = "video", **timm_kwargs: Any) -> TimmEncoder:
    import timm

    if timm_kwargs.pop("pretrained", False):
        raise UserError("timm weights are never downloaded here: leave pretrained unset and load weights yourself")
    reserved = sorted(set(timm_kwargs) & set(_RESERVED))
    if reserved:
        raise UserError(f"timm option(s) {', '.join(reserved)} are set by ssl_video and cannot be overridden")
    try:
        net = timm.create_model(model_name, pretrained=False, features_only=True, out_indices=(-1,),
                                in_chans=3 if modality == "video" else 1, **timm_kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"timm model '{model_name}' cannot be built as a feature extractor: "
                        f"{one_line(exc)}") from None
    return TimmEncoder(net, modality)


def timm_entry(model_name: str, overrides: dict[str, Any]) -> EncoderEntry:
    """Registry entry for ``timm:<model_name>``: input defaults from timm's pretrained config."""
    import timm

    if not timm.is_model(model_name):
        raise UserError(f"unknown timm model '{model_name}' (timm.list_models() lists them)")
    modality = overrides.get("modality", "video")
    if modality not in ("video", "audio"):
        raise UserError(f"modality must be 'video' or 'audio', got {modality!r}")
    if modality == "video":
        cfg = timm.get_pretrained_cfg(model_name)
        crop = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
        crop_pct = cfg.crop_pct if cfg is not None and cfg.crop_pct else 0.875
        inputs = dict(
            frames=8, fps=None, crop_size=crop, resize_size=int(round(crop / crop_pct)),
            mean=tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406),
            std=tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225),
        )
        source = (f"timm {model_name} applied per frame; crop, resize and mean/std from timm's pretrained config; "
                  "8 frames spread over the clip (TSN-style) chosen here")
    else:
        from ssl_video.models.audio import STICA_AUDIO

        inputs = {k: v for k, v in STICA_AUDIO.items() if k != "source"}
        source = f"timm {model_name} with one input channel; audio input defaults of STiCA"
    builder = partial(build_timm_encoder, model_name)
    return EncoderEntry(name=f"{TIMM_PREFIX}{model_name}", builder=builder, modality=modality, inputs=inputs,
                        source=source, summary=f"timm {model_name} ({modality})", options={"modality": "video"})


register_prefix(TIMM_PREFIX, timm_entry)
