"""``imagenet2d``: a 2-D ResNet state dict (torchvision or timm names; the two agree for ResNet-18/50/101)
inflated into a CoST-ResNet the way the CoST authors initialise it.

hikvision-research/cost configs set ``pretrained2d=True, pretrained='torchvision://resnet50'`` (or 101);
MMAction2's ``ResNet3d._inflate_weights`` then copies every conv and BatchNorm by name, a conv kernel
``W`` (``C x C' x k x k``) becoming ``W.unsqueeze(2).expand(C, C', t, k, k) / t`` (``_inflate_conv_params``).
In CoST every kernel has ``t = 1``, so the kernels are copied unchanged, the 3x3 ones into the shared CoST
kernels; the view coefficients (CoST(a) logits, CoST(b) mixing layers) keep their initialisation, and the
classifier (``fc.*``) is dropped. ``num_batches_tracked`` may be absent (older torchvision files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of
from ssl_video.models.imports.cost_layout import cost_arch

NOT_IN_2D = ("view_logits", "channel_mix.weight", "view_mix.weight", "num_batches_tracked")


def inflate(key: str, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """MMAction2's rule: a 2-D kernel repeated over ``t`` frames and divided by ``t``."""
    if len(shape) == 5 and tensor.ndim == 4:
        return tensor.unsqueeze(2).expand(tuple(shape)) / shape[2]
    return tensor


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    from ssl_video.models.registry import create_encoder

    if options.modality != "video":
        raise UserError("CoST encoders are video encoders (drop --modality audio)")
    state = state_dict_of(checkpoint, str(source))
    if "conv1.weight" not in state or state["conv1.weight"].ndim != 4:
        raise UserError(f"{source} is not a 2-D ResNet state dict (no 4-D 'conv1.weight'; deep-stem variants "
                        "such as resnet50d are not supported)")
    arch = cost_arch(state, options.arch, str(source))
    variant = options.variant or "b"
    model = create_encoder(arch, cost_variant=variant)
    load_mapped(model, state, lambda key: None if key.startswith("fc.") else key,
                f"{source} (2-D ResNet into '{arch}')", reshape=inflate,
                optional=lambda key: key.endswith(NOT_IN_2D))
    return Imported(model, {"layout": "torchvision/timm 2-D ResNet, inflated per MMAction2 ResNet3d",
                            "variant": variant, "initialised_here": "CoST view coefficients (not in a 2-D net)"})
