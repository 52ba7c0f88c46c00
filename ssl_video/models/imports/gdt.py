"""``gdt``: checkpoints of facebookresearch/GDT (``gdt_K400.pth``, ``gdt_HT100M.pth``, ``gdt_IG65M.pth``).

Layout (GDT ``model.py``): the video backbone is ``video_network.base`` (``src/vmz.py``, torchvision's
VideoResNet names: ``stem.*``, ``layer1.0.conv1.0.0.weight`` ...; its ``fc`` is an Identity), the audio
backbone ``audio_network.base`` (``src/resnet.py`` ResNet-9 with a 1-channel ``conv1``: ``conv1``, ``bn1``,
``layer1.0.conv1`` ...; its unused ``fc`` stays in the file), then heads ``mlp_v`` / ``mlp_a`` (and STiCA's
``video_pooling``). The official evaluation (``eval_video.py``) reads ``ckpt["state_dict"]`` or
``ckpt["model"]`` and strips ``module.`` anywhere in a key (``utils.load_model_parameters``); so do we,
but strictly: every tensor of the zoo encoder must come from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of

PREFIX = {"video": "video_network.base.", "audio": "audio_network.base."}
DEFAULT_ARCH = {"video": "r2plus1d_18", "audio": "audio_resnet9"}
ARCHS = {"video": ("r2plus1d_18", "r2plus1d_34"), "audio": ("audio_resnet9", "audio_resnet18")}


def rename(prefix: str):
    def apply(key: str) -> str | None:
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix):]
        return None if rest.startswith("fc.") else rest

    return apply


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    from ssl_video.models.registry import create_encoder

    modality = options.modality
    arch = options.arch or DEFAULT_ARCH[modality]
    if arch not in ARCHS[modality]:
        raise UserError(f"--arch for a GDT {modality} encoder: {', '.join(ARCHS[modality])} (got {arch!r})")
    state = state_dict_of(checkpoint, str(source))
    prefix = PREFIX[modality]
    if not any(key.startswith(prefix) for key in state):
        raise UserError(f"{source} is not a GDT checkpoint: no '{prefix}*' keys (first keys: "
                        f"{', '.join(list(state)[:3])})")
    model = create_encoder(arch)
    dropped = load_mapped(model, state, rename(prefix), f"{source} (GDT {modality} backbone, '{arch}')")
    return Imported(model, {"layout": f"facebookresearch/GDT model.py: {prefix}*",
                            "dropped": sorted({".".join(k.split(".")[:2]) for k in dropped})})
