"""Encoders out of training checkpoints, into encoder directories anyone can load.

Training checkpoint (written by the trainer with ``torch.save``; read here with ``weights_only=True``)::

    {"model": state dict of the whole method module,
     "encoders": {"video": {"name": "r2plus1d_18", "args": {...}, "prefix": "video_encoder."},
                  "audio": {...}},
     "step": int, "config": dict, "recipe": str | None, "git_revision": str | None,
     "version": str, "results": dict (optional)}

A run directory holds ``checkpoints/last.pt`` and may hold ``results/*.json`` (evaluation reports).

Encoder directories (``config.json`` + weights) are written and read by :mod:`ssl_video.models.io`; this
module only turns a training checkpoint into one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError, one_line
from ssl_video.models.io import check_state_dict, save_encoder, save_torchvision

__all__ = ["read_checkpoint", "find_checkpoint", "checkpoint_encoder", "export_encoder"]

ROLES = ("video", "audio")


# ---------------------------------------------------------------------------------------------- checkpoints


def find_checkpoint(source: str | Path, epoch: str = "last") -> Path:
    """A checkpoint file, or inside a run directory ``checkpoints/last.pt`` (``epoch="last"``) or
    ``checkpoints/best.pt`` (``epoch="best"``: the epoch with the best validation metric)."""
    if epoch not in ("last", "best"):
        raise UserError(f"--epoch: expected 'last' or 'best', got {epoch!r}")
    source = Path(source)
    if source.is_dir():
        path = source / "checkpoints" / f"{epoch}.pt"
        if not path.is_file():
            if epoch == "best":
                raise UserError(f"--epoch best: {source} has no checkpoints/best.pt (the run needs a validation set "
                                "and trainer.best_metric)")
            raise UserError(f"{source} is a directory without checkpoints/last.pt (not a run directory?)")
        return path
    if not source.is_file():
        raise UserError(f"no such run directory or checkpoint file: {source}")
    if epoch == "best":
        raise UserError(f"--epoch best needs a run directory, got the file {source}")
    return source


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``) and check its layout."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise UserError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
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
                warnings.warn(f"skipping unreadable evaluation report {report}: {one_line(exc)}", stacklevel=2)
    return results


def export_encoder(source: str | Path, out: str | Path, encoder: str | None = None,
                   format: str = "native", epoch: str = "last") -> list[Path]:
    """Export encoder(s) from a run directory or checkpoint; returns the directories written.

    ``encoder``: ``"video"``, ``"audio"`` or ``"all"`` (one subdirectory per role); by default the video
    encoder, or the only encoder the checkpoint has. ``epoch``: ``"last"`` or ``"best"`` (see
    :func:`find_checkpoint`).
    """
    if format not in ("native", "torchvision"):
        raise UserError(f"unknown export format '{format}' (native or torchvision)")
    from ssl_video.files import check_output_dir

    check_output_dir(out, "--out")
    source = Path(source)
    path = find_checkpoint(source, epoch)
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

