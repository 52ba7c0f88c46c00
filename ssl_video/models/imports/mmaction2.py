"""``mmaction2``: CoST checkpoints of hikvision-research/cost (MMAction2 ``ResNet3dCoST``) -> cost_r50 / cost_r101.

Layout (MMAction2 ``mmaction/models/backbones/resnet3d.py`` and CoST ``cost/models/backbones/resnet3d_cost.py``,
``cost/models/common/conv_cost.py``): under ``state_dict``, ``backbone.conv1.{conv,bn}``, per block
``backbone.layerI.J.convK.conv.weight`` (``C x C' x 1 x k x k``) and ``.convK.bn.*``,
``.downsample.{conv,bn}``; a CoST ``conv2.conv`` also holds ``alpha`` (``3 x C``, CoST(a)) or ``fc1`` / ``fc2``
(CoST(b)); ``cls_head.*`` is the classifier (dropped). The variant and the CoST block pattern come from
which blocks carry ``alpha`` / ``fc1``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of
from ssl_video.models.imports.cost_layout import blocks, cost_arch, pattern_of

_CONV_BN = re.compile(r"^(.*?)(conv\d|downsample)\.(conv|bn)\.(.+)$")
_COST = {"alpha": "view_logits", "fc1.weight": "channel_mix.weight", "fc2.weight": "view_mix.weight"}


def rename(key: str) -> str | None:
    if not key.startswith("backbone."):
        return None  # cls_head.* and anything outside the backbone
    key = key[len("backbone."):]
    match = _CONV_BN.match(key)
    if match is None:
        return key  # reported as unknown by the strict check
    block, module, part, rest = match.groups()
    if module == "downsample":
        return f"{block}downsample.{0 if part == 'conv' else 1}.{rest}"
    if part == "bn":
        return f"{block}bn{module[-1]}.{rest}"
    return f"{block}{module}.{_COST.get(rest, rest)}"


def reshape(key: str, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if key.endswith("view_logits") and tuple(tensor.shape) == (shape[1], shape[0]):
        return tensor.t().contiguous()  # alpha is 3 x C, view_logits C x 3
    if len(shape) == 4 and tensor.ndim == 5 and tensor.shape[2] == 1:
        return tensor.squeeze(2)  # a CoST kernel: C x C' x 1 x 3 x 3 -> C x C' x 3 x 3
    return tensor


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    from ssl_video.models.cost import COST_BLOCKS
    from ssl_video.models.registry import create_encoder

    if options.modality != "video":
        raise UserError("CoST encoders are video encoders (drop --modality audio)")
    state = state_dict_of(checkpoint, str(source))
    if not any(key.startswith("backbone.") for key in state):
        raise UserError(f"{source} is not an MMAction2 checkpoint: no 'backbone.*' keys (first keys: "
                        f"{', '.join(list(state)[:3])})")
    arch = cost_arch([k for k in state if k.startswith("backbone.")], options.arch, str(source))
    if arch == "cost_r18":
        raise UserError(f"{source}: a ResNet-18 backbone; CoST checkpoints are R50 / R101 (cost_r50, cost_r101)")
    with_alpha, with_fc = blocks(state, ".conv.alpha"), blocks(state, ".conv.fc1.")
    if not (with_alpha or with_fc) or (with_alpha and with_fc):
        raise UserError(f"{source}: no CoST layers ('conv2.conv.alpha' or 'conv2.conv.fc1.weight' keys): not a "
                        "CoST checkpoint (I3D / C2D backbones are not in the zoo)")
    variant = "a" if with_alpha else "b"
    if options.variant not in (None, variant):
        raise UserError(f"{source} holds CoST({variant}) layers, not CoST({options.variant})")
    pattern = pattern_of(arch, with_alpha or with_fc)
    args: dict[str, Any] = {"cost_variant": variant}
    if pattern != COST_BLOCKS[arch]:
        if arch == "cost_r50" and pattern == COST_BLOCKS["cost_r50:i3d"]:
            args["block_pattern"] = "i3d"
        else:
            raise UserError(f"{source}: CoST layers at {pattern} match no known {arch} pattern "
                            f"(official {COST_BLOCKS[arch]})")
    model = create_encoder(arch, **args)
    dropped = load_mapped(model, state, rename, f"{source} (MMAction2 CoST backbone, '{arch}')", reshape=reshape)
    return Imported(model, {"layout": "MMAction2 ResNet3dCoST (backbone.*)", "variant": variant,
                            "dropped": sorted({k.split(".")[0] for k in dropped})})
