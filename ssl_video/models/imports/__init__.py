"""Checkpoints released by other code bases -> encoder directories (``ssl-video import FORMAT SOURCE``).

One small module per format turns the file's state dict into the state dict of a zoo encoder (a rename
table plus the few reshapes the layouts need); everything else is shared here: reading the file (tensors
and plain containers only, ``weights_only=True``), unwrapping what training scripts saved around the
weights (``state_dict`` / ``model`` entries, ``module.`` prefixes), the strict key and shape check, and
writing the same directory as ``ssl-video export`` (``config.json`` + ``model.safetensors``) with the
provenance of the file (path, format, sha256). Formats and what was checked: docs/WEIGHTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_video.errors import UserError, one_line

if TYPE_CHECKING:
    import torch

__all__ = ["FORMATS", "ImportOptions", "Imported", "import_checkpoint", "read_checkpoint", "state_dict_of",
           "load_mapped", "file_sha256"]

# format -> (module, one-line description)
FORMATS = {
    "torchvision": ("torchvision_video", "torchvision.models.video state dicts (r2plus1d_18, r3d_18, mc3_18, s3d)"),
    "gdt": ("gdt", "facebookresearch/GDT checkpoints (gdt_K400.pth, gdt_HT100M.pth, gdt_IG65M.pth)"),
    "tsp": ("tsp", "HumamAlwassel/TSP released encoders (R(2+1)D-34, R(2+1)D-18, R3D-18)"),
    "mmaction2": ("mmaction2", "hikvision-research/cost checkpoints (MMAction2 layout) -> cost_r50 / cost_r101"),
    "imagenet2d": ("imagenet2d", "a 2-D ResNet-18/50/101 state dict (torchvision or timm) inflated into CoST"),
    "timm": ("timm_file", "a timm checkpoint for a timm:<name> encoder"),
}
WRAPPERS = ("state_dict", "model", "state_dict_ema", "module")


@dataclass
class ImportOptions:
    """What the command line passes on: ``arch`` (zoo or timm name), ``modality``, heads, CoST variant, seed."""

    arch: str | None = None
    modality: str = "video"
    keep_heads: bool = False
    variant: str | None = None
    seed: int = 0


@dataclass
class Imported:
    """A format module's answer: the encoder (weights loaded) and what goes into config.json besides."""

    model: torch.nn.Module
    notes: dict[str, Any] = field(default_factory=dict)  # into provenance (dropped keys, inferred settings)
    side_files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # file name -> tensors


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _allowed_globals() -> list:
    """What published checkpoints hold beside tensors and plain containers, and may be rebuilt: the
    argparse.Namespace that GDT's and TSP's training scripts save as ``args`` (a holder of attributes), and the
    numpy scalars and numeric arrays of an MMCV ``meta`` (a best score, an iteration count). Each is data; a
    numpy array of Python objects, or any other class, is still refused."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    numeric = [type(np.dtype(code)) for code in "?bhilqpBHILQPefdgFDG"]
    allowed: list = [argparse.Namespace, np.dtype, np.ndarray, *numeric]
    for name in ("scalar", "_reconstruct"):  # files written under numpy 1 name the module numpy.core
        allowed += [getattr(multiarray, name), (getattr(multiarray, name), f"numpy.core.multiarray.{name}")]
    return allowed


def read_checkpoint(path: str | Path) -> Any:
    """The file's content: safetensors, or a torch pickle of tensors and plain containers (nothing else)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such checkpoint file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError and others for damaged files
            raise UserError(f"{path} is corrupt or truncated (not a readable safetensors file: {one_line(exc)})") \
                from None
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if any(mark in str(exc) for mark in ("Unsupported global", "GLOBAL", "safe_globals")):
            raise UserError(f"{path}: the file holds Python objects besides tensors; refusing to unpickle it "
                            "(where you trust the file, re-save its state dict alone: see docs/WEIGHTS.md)") from None
        raise UserError(f"{path} is corrupt or truncated (not a readable checkpoint: {one_line(exc)})") from None
    except Exception as exc:  # zip reader errors, EOF, unknown magic numbers
        raise UserError(f"{path} is corrupt or truncated (not a readable checkpoint: {one_line(exc)})") from None


def state_dict_of(obj: Any, what: str, wrappers: Iterable[str] = WRAPPERS) -> dict[str, torch.Tensor]:
    """The tensors of ``obj`` after unwrapping training-script entries and stripping ``module.`` prefixes."""
    import torch

    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in wrappers if isinstance(obj.get(k), dict)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{what} holds no state dict (expected a mapping of tensors, possibly under "
                        f"{' / '.join(repr(w) for w in wrappers)})")
    state = {str(k).replace("module.", ""): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise UserError(f"{what} holds no tensors")
    return state


def load_mapped(model: torch.nn.Module, state: dict[str, torch.Tensor], rename: Callable[[str], str | None],
                what: str, reshape: Callable[[str, torch.Tensor, torch.Size], torch.Tensor] | None = None,
                optional: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Load ``state`` into ``model`` through ``rename`` (file key -> model key, or None: not part of the encoder).

    ``reshape(model_key, tensor, model_shape)`` adapts layouts (e.g. a 2-D kernel into a 1 x k x k one).
    Unknown keys (renamed to a key the model lacks), missing keys (those ``optional`` does not excuse) and
    shape mismatches are one-line errors naming the first few. Returns the file keys left out.
    """
    from ssl_video.models.io import _names, check_state_dict

    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    dropped, unknown = [], []
    for key, tensor in state.items():
        target = rename(key)
        if target is None:
            dropped.append(key)
        elif target not in expected:
            unknown.append(key)
        else:
            mapped[target] = reshape(target, tensor, expected[target].shape) if reshape else tensor
    if unknown:
        raise UserError(f"{what} does not fit the architecture: {len(unknown)} unknown key(s): {_names(unknown)}")
    for key in set(expected) - set(mapped):
        if optional(key):
            mapped[key] = expected[key]
    check_state_dict(model, mapped, what)
    model.load_state_dict(mapped, strict=True)
    return sorted(dropped)


def import_checkpoint(fmt: str, source: str | Path, out: str | Path, options: ImportOptions | None = None) -> Path:
    """Read ``source`` in format ``fmt`` and write the encoder directory ``out``; returns ``out``."""
    import torch
    from safetensors.torch import save_file

    from ssl_video.files import write_atomic
    from ssl_video.models.io import save_encoder

    if fmt not in FORMATS:
        raise UserError(f"unknown import format '{fmt}' (formats: {', '.join(FORMATS)})")
    options = options or ImportOptions()
    if options.modality not in ("video", "audio"):
        raise UserError(f"--modality must be 'video' or 'audio', got {options.modality!r}")
    source = Path(source)
    module = importlib.import_module(f"{__name__}.{FORMATS[fmt][0]}")
    checkpoint = read_checkpoint(source)
    torch.manual_seed(options.seed)  # parameters the file does not hold (e.g. CoST(b) mixing layers)
    imported: Imported = module.convert(checkpoint, source, options)
    model = imported.model.eval()
    provenance = {"source": str(source.resolve()), "format": fmt, "sha256": file_sha256(source),
                  "init": "imported", **imported.notes}
    extra = {}
    out = Path(out)
    for name, tensors in imported.side_files.items():
        extra.setdefault("side_files", {})[name] = {k: list(v.shape) for k, v in tensors.items()}
    save_encoder(model, out, provenance=provenance, extra=extra)
    for name, tensors in imported.side_files.items():
        state = {k: v.detach().contiguous() for k, v in tensors.items()}
        write_atomic(out / name, lambda tmp, state=state: save_file(state, str(tmp)))
    return out
