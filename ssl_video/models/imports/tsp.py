"""``tsp``: encoders released by HumamAlwassel/TSP (``extract_features/extract_features.py`` MODEL_URLS).

Layout (TSP ``models/model.py``): the checkpoint's ``model`` entry holds ``features.*`` (the backbone:
torchvision's VideoResNet names, its ``fc`` emptied) and the heads ``fc1`` (action) / ``fc2`` (region),
or ``fc`` for one head (TAC, Kinetics). The architecture is the file name's first ``-`` field (as their
extraction script reads it; a field that starts with an architecture's name and ``_`` names it too, as in the
IG65M release ``r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth``) or ``--arch``. Their R(2+1)D-34 (``models/backbone.py``) sets every BatchNorm to
eps 1e-3, momentum 0.9 and gives each (2+1)D conv its own hidden width: recorded as encoder args
(``bn_eps``, ``bn_momentum``, ``separable_mid="conv"``) so the loaded encoder behaves the same. A plain
backbone state dict (no ``features.`` prefix, e.g. the IG65M -> Kinetics R(2+1)D-34 TSP starts from) is
read too. Heads are dropped, or kept in ``heads.safetensors`` with ``--keep-heads``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of

ARCH_ARGS = {
    "r2plus1d_34": {"bn_eps": 1e-3, "bn_momentum": 0.9, "separable_mid": "conv"},
    "r2plus1d_18": {},
    "r3d_18": {},
}
# TSP's input contract (HumamAlwassel/TSP extract_features.py and train.py)
TSP_INPUTS = {"frames": 16, "fps": 15.0, "crop_size": 112, "resize_size": (128, 171),
              "mean": (0.43216, 0.394666, 0.37645), "std": (0.22803, 0.22145, 0.216989)}
HEADS = ("fc.", "fc1.", "fc2.")


def arch_of(filename: str) -> str:
    """The backbone a published file name names: its first ``-`` field, or the architecture that field starts
    with (``r2plus1d_34_clip8_ft_kinetics_from_ig65m`` -> ``r2plus1d_34``)."""
    field = filename.split("-")[0]
    return next((arch for arch in ARCH_ARGS if field == arch or field.startswith(arch + "_")), field)


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    from ssl_video.models.registry import create_encoder

    arch = options.arch or arch_of(source.name)
    if arch not in ARCH_ARGS:
        raise UserError(f"cannot tell the TSP backbone from the file name {source.name!r}: give --arch "
                        f"({', '.join(ARCH_ARGS)})")
    if options.modality != "video":
        raise UserError("TSP encoders are video encoders (drop --modality audio)")
    state = state_dict_of(checkpoint, str(source), wrappers=("model", "state_dict"))
    wrapped = any(key.startswith("features.") for key in state)
    heads = {k: v for k, v in state.items() if k.startswith(HEADS)}

    def rename(key: str) -> str | None:
        if key.startswith(HEADS):
            return None
        if wrapped:
            return key[len("features."):] if key.startswith("features.") else key
        return key

    model = create_encoder(arch, **TSP_INPUTS, **ARCH_ARGS[arch])
    load_mapped(model, state, rename, f"{source} (TSP backbone '{arch}')")
    notes = {"layout": "HumamAlwassel/TSP models/model.py: features.* + fc1/fc2" if wrapped else "plain backbone",
             "heads": {k: list(v.shape) for k, v in heads.items()},
             "heads_kept": bool(options.keep_heads and heads)}
    side = {"heads.safetensors": heads} if options.keep_heads and heads else {}
    return Imported(model, notes, side)
