"""``torchvision``: state dicts of ``torchvision.models.video`` models (r2plus1d_18, r3d_18, mc3_18, s3d).

The zoo's parameter names equal torchvision's, so the mapping is the identity minus the classifier
(``fc.*``; ``classifier.*`` for S3D). The input contract is that of torchvision's ``KINETICS400_V1``
weights, read from the installed torchvision (its transforms: resize, crop, mean/std; its docs: clip
length and frame rate).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of

ARCHS = {"r2plus1d_18": "R2Plus1D_18_Weights", "r3d_18": "R3D_18_Weights", "mc3_18": "MC3_18_Weights",
         "s3d": "S3D_Weights"}
CLASSIFIER = {"s3d": "classifier."}


def kinetics_inputs(arch: str) -> dict[str, Any]:
    """Input contract of torchvision's Kinetics-400 weights for ``arch`` (nothing is downloaded)."""
    from torchvision.models import video

    weights = getattr(video, ARCHS[arch]).KINETICS400_V1
    transforms = weights.transforms()
    docs = weights.meta.get("_docs", "")
    frames = re.search(r"clip_len=(\d+)", docs)
    fps = re.search(r"frame_rate=(\d+)", docs)
    return {"frames": int(frames.group(1)) if frames else 16, "fps": float(fps.group(1)) if fps else 15.0,
            "crop_size": int(transforms.crop_size[0]), "resize_size": tuple(int(v) for v in transforms.resize_size),
            "mean": tuple(transforms.mean), "std": tuple(transforms.std)}


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    from ssl_video.models.registry import create_encoder

    arch = options.arch
    if arch not in ARCHS:
        raise UserError(f"--arch must name torchvision's video model: {', '.join(ARCHS)} (got {arch!r})")
    if options.modality != "video":
        raise UserError("torchvision's video models are video encoders (drop --modality audio)")
    state = state_dict_of(checkpoint, str(source))
    model = create_encoder(arch, **kinetics_inputs(arch))
    head = CLASSIFIER.get(arch, "fc.")
    dropped = load_mapped(model, state, lambda key: None if key.startswith(head) else key,
                          f"{source} (torchvision {arch})")
    return Imported(model, {"architecture_source": f"torchvision.models.video.{arch}",
                            "input_contract": f"torchvision {ARCHS[arch]}.KINETICS400_V1", "dropped": dropped})
