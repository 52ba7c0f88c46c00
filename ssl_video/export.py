"""Encoders out of training checkpoints, into files anyone can load; and back in.

Training checkpoint (written by the trainer with ``torch.save``; read here with ``weights_only=True``)::

    {"model": state dict of the whole method module,
     "encoders": {"video": {"name": "r2plus1d_18", "args": {...}, "prefix": "video_encoder."},
                  "audio": {...}},
     "step": int, "config": dict, "recipe": str | None, "git_revision": str | None,
     "version": str, "results": dict (optional)}

A run directory holds ``checkpoints/last.pt`` and may hold ``results/*.json`` (evaluation reports).

Exported encoder (``native`` format), one directory per encoder:

* ``model.safetensors``: the backbone's state dict, no prefix, no heads, no optimizer state;
* ``config.json``: architecture name and constructor arguments, the :class:`EncoderSpec` (input contract),
  provenance (recipe, step, git revision, package version, source) and any evaluation results known.

``torchvision`` format: ``<arch>.pth``, a plain state dict that ``torchvision.models.video.<arch>()``
loads with ``strict=False`` reporting only the classifier as missing (``fc.*``, or ``classifier.1.*`` for
S3D), plus the same ``config.json``. Nothing is ever unpickled: safetensors, or ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "TORCHVISION_ARCHS",
    "read_checkpoint",
    "find_checkpoint",
    "checkpoint_encoder",
    "export_encoder",
    "save_encoder",
    "load_encoder",
    "read_encoder_config",
    "check_state_dict",
    "torchvision_model",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_NAME = "ssl_video.encoder"
FORMAT_VERSION = 1
ROLES = ("video", "audio")
# architectures whose parameter names/shapes equal torchvision's: arch -> (torchvision builder, classifier keys)
TORCHVISION_ARCHS = {
    "r2plus1d_18": ("torchvision.models.video.r2plus1d_18()", ("fc.weight", "fc.bias")),
    "r3d_18": ("torchvision.models.video.r3d_18()", ("fc.weight", "fc.bias")),
    "mc3_18": ("torchvision.models.video.mc3_18()", ("fc.weight", "fc.bias")),
    "s3d": ("torchvision.models.video.s3d()", ("classifier.1.weight", "classifier.1.bias")),
    "r2plus1d_34": (
        "torchvision.models.video.resnet.VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)",
        ("fc.weight", "fc.bias"),
    ),
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _names(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------- checkpoints


def find_checkpoint(source: str | Path) -> Path:
    """A checkpoint file, or ``checkpoints/last.pt`` inside a run directory."""
    source = Path(source)
    if source.is_dir():
        path = source / "checkpoints" / "last.pt"
        if not path.is_file():
            raise UserError(f"{source} is a directory without checkpoints/last.pt (not a run directory?)")
        return path
    if not source.is_file():
        raise UserError(f"no such run directory or checkpoint file: {source}")
    return source


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``) and check its layout."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise UserError(f"cannot read checkpoint {path}: {_one_line(exc)}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise UserError(f"{path} is not a training checkpoint (expected a dict with 'model' and 'encoders')")
    encoders = checkpoint.get("encoders")
    if not isinstance(encoders, dict) or not encoders:
        raise UserError(f"{path} has no 'encoders' entry, so the encoder architecture is unknown")
    for role, entry in encoders.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "prefix" not in entry:
            raise UserError(f"{path}: encoders.{role} must give 'name', 'args' and 'prefix'")
    return checkpoint


def _strip_wrappers(key: str) -> str:
    # DistributedDataParallel and torch.compile wrap modules as "module." / "_orig_mod."
    changed = True
    while changed:
        changed = False
        for wrapper in ("module.", "_orig_mod."):
            if key.startswith(wrapper):
                key, changed = key[len(wrapper):], True
    return key


def checkpoint_encoder(checkpoint: dict[str, Any], role: str, path: str | Path = "checkpoint"):
    """``(encoder, reference)`` of ``role``: the encoder rebuilt and strict-loaded from the checkpoint."""
    from ssl_video.models.registry import create_encoder

    encoders = checkpoint["encoders"]
    if role not in encoders:
        raise UserError(f"{path} has no {role} encoder (it has: {', '.join(sorted(encoders))})")
    entry = encoders[role]
    prefix = entry.get("prefix") or ""
    args = dict(entry.get("args") or {})
    state = {}
    for key, value in checkpoint["model"].items():
        key = _strip_wrappers(key)
        if key.startswith(prefix):
            state[key[len(prefix):]] = value
    if not state:
        raise UserError(f"{path}: no weights start with the {role} encoder prefix '{prefix}'")
    try:
        encoder = create_encoder(entry["name"], **args)
    except UserError as exc:
        raise UserError(f"{path}: {role} encoder: {exc}") from None
    check_state_dict(encoder, state, f"{path} ({role} encoder '{entry['name']}')")
    encoder.load_state_dict(state, strict=True)
    return encoder, {"name": entry["name"], "args": args}


def _run_dir_of(checkpoint_path: Path, source: Path) -> Path | None:
    if source.is_dir():
        return source
    if checkpoint_path.parent.name == "checkpoints":
        return checkpoint_path.parent.parent
    return None


def _known_results(checkpoint: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    results = dict(checkpoint.get("results") or {})
    if run_dir is not None and (run_dir / "results").is_dir():
        for report in sorted((run_dir / "results").glob("*.json")):
            try:
                results[report.stem] = json.loads(report.read_text())
            except (OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable evaluation report {report}: {_one_line(exc)}", stacklevel=2)
    return results


def export_encoder(source: str | Path, out: str | Path, encoder: str | None = None,
                   format: str = "native") -> list[Path]:
    """Export encoder(s) from a run directory or checkpoint; returns the directories written.

    ``encoder``: ``"video"``, ``"audio"`` or ``"all"`` (one subdirectory per role); by default the video
    encoder, or the only encoder the checkpoint has.
    """
    if format not in ("native", "torchvision"):
        raise UserError(f"unknown export format '{format}' (native or torchvision)")
    source = Path(source)
    path = find_checkpoint(source)
    checkpoint = read_checkpoint(path)
    available = [role for role in ROLES if role in checkpoint["encoders"]] or sorted(checkpoint["encoders"])
    if encoder is None:
        roles, nested = (["video"] if "video" in available else available[:1]), False
    elif encoder == "all":
        roles, nested = available, True
    else:
        roles, nested = [encoder], False
    provenance = {
        "source": str(path),
        "step": checkpoint.get("step"),
        "recipe": checkpoint.get("recipe"),
        "git_revision": checkpoint.get("git_revision"),
        "version": checkpoint.get("version"),
    }
    results = _known_results(checkpoint, _run_dir_of(path, source))
    written = []
    for role in roles:
        model, _ = checkpoint_encoder(checkpoint, role, path)
        target = Path(out) / role if nested else Path(out)
        extra = {"role": role, "training_config": checkpoint.get("config")}
        if format == "native":
            save_encoder(model, target, provenance=provenance, results=results, extra=extra)
        else:
            save_torchvision(model, target, provenance=provenance, results=results, extra=extra)
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------- writing


def _encoder_config(model, provenance, results, extra, fmt: str, weights: str) -> dict[str, Any]:
    from ssl_video import __version__

    if model.spec is None or model.encoder_name is None:
        raise UserError("only encoders built with ssl_video.create_encoder can be exported")
    config = {
        "format": FORMAT_NAME if fmt == "native" else "torchvision",
        "format_version": FORMAT_VERSION,
        "architecture": model.encoder_name,
        "args": dict(model.encoder_args or {}),
        "weights": weights,
        "params": sum(p.numel() for p in model.parameters()),
        "spec": model.spec.to_dict(),
        "provenance": {**(provenance or {}), "exported_with": __version__},
        "results": results or {},
    }
    config.update(extra or {})
    return config


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def _plain_state_dict(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


def save_encoder(model, out: str | Path, provenance: dict[str, Any] | None = None,
                 results: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (built by ``create_encoder``) as ``out/config.json`` + ``out/model.safetensors``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = _encoder_config(model, provenance, results, extra, "native", WEIGHTS_FILE)
    metadata = {"format": FORMAT_NAME, "architecture": model.encoder_name,
                "args": json.dumps(config["args"], default=str)}
    state = _plain_state_dict(model)
    _write_atomic(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    _write_json(out / CONFIG_FILE, config)
    return out


def save_torchvision(model, out: str | Path, provenance: dict[str, Any] | None = None,
                     results: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out/<arch>.pth``, a state dict for torchvision's model of the same architecture."""
    name = model.encoder_name
    if name not in TORCHVISION_ARCHS:
        raise UserError(f"'{name}' has no torchvision counterpart "
                        f"(torchvision format: {', '.join(TORCHVISION_ARCHS)})")
    width = (model.encoder_args or {}).get("width", 1.0)
    if width != 1:
        raise UserError(f"torchvision format needs width=1 (torchvision's models have fixed widths), got {width}")
    if (model.encoder_args or {}).get("frame_diff"):
        raise UserError("torchvision format cannot hold frame_diff=True (torchvision's stems take RGB only)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    builder, classifier = TORCHVISION_ARCHS[name]
    weights = f"{name}.pth"
    config = _encoder_config(model, provenance, results, extra, "torchvision", weights)
    config["torchvision"] = {
        "builder": builder,
        "missing_keys": list(classifier),
        "load": f"model = {builder}; model.load_state_dict(torch.load('{weights}', weights_only=True), "
                f"strict=False)  # only {', '.join(classifier)} stay untrained",
    }
    state = _plain_state_dict(model)
    _write_atomic(out / weights, lambda tmp: torch.save(state, tmp))
    _write_json(out / CONFIG_FILE, config)
    return out


def torchvision_model(name: str):
    """torchvision's model with the architecture of zoo encoder ``name`` (random init, nothing downloaded)."""
    from torchvision.models import video as tv

    if name == "r2plus1d_34":
        from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

        return VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)
    if name not in TORCHVISION_ARCHS:
        raise UserError(f"'{name}' has no torchvision counterpart")
    return getattr(tv, name)(weights=None)


# ---------------------------------------------------------------------------------------------- loading


def check_state_dict(model, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise a one-line UserError naming missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es) (file vs model): {_names(wrong, 3)}")
    raise UserError(f"{what} does not fit the architecture: " + "; ".join(parts))


def read_encoder_config(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(directory, config)`` of an exported encoder (a directory, or a file inside it)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.exists():
        raise UserError(f"no such encoder directory: {path}")
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(f"{directory} has no {CONFIG_FILE} "
                        "(export an encoder with: ssl-video export RUN --out DIR)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_path} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise UserError(f"{config_path} does not name an architecture (not an exported ssl_video encoder)")
    if not isinstance(config.get("args", {}), dict):
        raise UserError(f"{config_path}: 'args' must be a mapping of constructor arguments")
    return directory, config


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise UserError(f"missing weights file {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as exc:  # safetensors raises SafetensorError and others for damaged files
            raise UserError(f"{file} is corrupt or truncated "
                            f"(not a readable safetensors file: {_one_line(exc)})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{file} is corrupt or truncated "
                        f"(cannot be read as a state dict: {_one_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{file} is not a state dict of tensors")
    return state


def load_encoder(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild an exported encoder and strict-load its weights; returned in eval mode.

    Every problem (missing or damaged files, unknown architecture, weights of another architecture) is a
    :class:`~ssl_video.errors.UserError` with one line of explanation.
    """
    from ssl_video.models.registry import create_encoder

    directory, config = read_encoder_config(path)
    name = config["architecture"]
    try:
        model = create_encoder(name, **config.get("args", {}))
    except UserError as exc:
        raise UserError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / Path(str(config.get("weights") or WEIGHTS_FILE)).name
    state = _read_weights(weights)
    check_state_dict(model, state, f"{weights} (architecture '{name}')")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
