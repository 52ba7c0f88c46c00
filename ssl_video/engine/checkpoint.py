"""Training checkpoints: atomic writes, safe reads, and the rule for what a resume may change.

A checkpoint is a ``torch.save``d dict that ``torch.load(..., weights_only=True)`` reads (tensors, dicts,
lists, strings, numbers, None only)::

    model           state dict of the whole method (no DDP/compile prefixes)
    encoders        method.encoders(): role -> {"name", "args", "prefix"} (what ``ssl-video export`` reads)
    step            optimizer steps done; epoch and position in the epoch follow from it
    epoch, step_in_epoch, steps_per_epoch, total_steps
    optimizer       optimizer state dict (parameter groups carry "name" and "lr_scale")
    scaler          fp16 gradient-scaler state, or None
    world_size      processes the run was trained with (the global batch depends on it)
    config          the resolved recipe (dict); ``recipe``: the recipe file it came from, or None
    git_revision, version, format_version
    train_seconds   training wall time summed over every start
    metrics         the last logged metrics

Randomness needs no saved state: data randomness derives from (data seed, epoch, index) and the training
loop reseeds torch/numpy/python from (seed, rank, step) before every step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError, one_line
from ssl_video.files import write_atomic
from ssl_video.recipe import METHOD_SECTIONS

__all__ = [
    "FORMAT_VERSION",
    "RUNTIME_KEYS",
    "EXTENDABLE_KEYS",
    "atomic_save",
    "checkpoint_state",
    "save_checkpoint",
    "load_checkpoint",
    "remove_stale_tmp",
    "flatten",
    "config_differences",
    "check_resume",
    "PRETRAIN_FLAGS",
]

FORMAT_VERSION = 1

# Recipe keys a resumed run may change: they decide where data lives and how the run is watched, never what
# is learned. Every other key (method, model, data pipeline, batch, optimizer, schedule, training length,
# precision, seed) must match the checkpoint.
RUNTIME_KEYS = (
    "name",
    "data.root",
    "data.videos",
    "data.splits",
    "data.num_workers",
    "trainer.device",
    "trainer.compile",
    "trainer.find_unused_parameters",
    "trainer.deterministic",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.keep_every",
    "trainer.stop_at_step",
    "trainer.progress",
    "trainer.tensorboard",
    "trainer.trackers",
)

# Keys a resume may change with ``--extend`` (``train(..., extend=True)``): the training length. The schedule is
# laid over the new length (``lr_factor(step, new total)``) and the run goes on from the saved step.
EXTENDABLE_KEYS = ("trainer.max_steps", "trainer.epochs")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``: readers see the old file or
    the new one, never a partial one, whatever happens during the write."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_atomic(path, write, fsync=True)


def _place(source: Path, target: Path) -> None:
    """Atomically give ``target`` the content of ``source`` (a hard link where possible, else a copy)."""

    def link_or_copy(tmp: Path) -> None:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    write_atomic(target, link_or_copy, fsync=True)


def checkpoint_state(*, method, optimizer, scaler, step: int, steps_per_epoch: int, total_steps: int,
                     world_size: int, config: dict, recipe_path, git_revision: str | None, train_seconds: float,
                     metrics: dict) -> dict[str, Any]:
    """Everything a checkpoint holds (the layout in the module docstring), tensors moved to the CPU."""
    from ssl_video.version import __version__

    return {
        "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
        "encoders": method.encoders(),
        "step": step,
        "epoch": step // steps_per_epoch,
        "step_in_epoch": step % steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "world_size": world_size,
        "config": config,
        "recipe": str(recipe_path) if recipe_path is not None else None,
        "git_revision": git_revision,
        "version": __version__,
        "format_version": FORMAT_VERSION,
        "train_seconds": train_seconds,
        "metrics": metrics,
    }


def save_checkpoint(state: dict, last: Path, keep: Path | None = None) -> None:
    """Write ``state`` to ``last`` atomically; also as ``keep`` (e.g. ``step_<N>.pt``) when given."""
    atomic_save(state, last)
    if keep is not None:
        _place(last, keep)


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise UserError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise UserError(f"{path} is not a training checkpoint of ssl_video (no 'model'/'step')")
    return state


def remove_stale_tmp(directory: Path) -> None:
    """Remove temporary files left by a process killed while writing a checkpoint."""
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": {}}`` -> ``{"a.b": 1}`` (lists and tuples stay values, empty mappings vanish)."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _is_runtime(key: str, runtime: tuple[str, ...]) -> bool:
    return any(key == r or key.startswith(r + ".") for r in runtime)


def config_differences(saved: dict, current: dict, runtime: tuple[str, ...] = RUNTIME_KEYS) -> list[str]:
    """Dotted keys whose values differ between two resolved recipes, ignoring run-time-only keys."""
    a, b = flatten(saved), flatten(current)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if not _is_runtime(k, runtime) and a.get(k, "<unset>") != b.get(k, "<unset>")]


def _show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


PRETRAIN_FLAGS = {"run_dir": "--run-dir", "extend": "--extend", "resume": "--resume PATH"}


def check_resume(saved: dict, current: dict, where: Path, what: str = "checkpoint",
                 runtime: tuple[str, ...] = RUNTIME_KEYS, flags: dict | None = None) -> None:
    """Refuse (one-line :class:`UserError`) to resume with a recipe that changes what is learned.

    Only the active method's section counts: sections of other methods (which earlier versions recorded
    too) are left out of the comparison. ``flags`` names the caller's options in the hint (``run_dir``, and
    ``extend`` / ``resume`` where the caller has them; default: ``ssl-video pretrain``'s)."""
    flags = PRETRAIN_FLAGS if flags is None else flags
    inactive = {s for s in METHOD_SECTIONS.values() if s} - set(current)
    saved = {k: v for k, v in saved.items() if k not in inactive}
    diff = config_differences(saved, current, runtime)
    if not diff:
        return
    a, b = flatten(saved), flatten(current)
    shown = "; ".join(f"{k}: {_show(a.get(k, '<unset>'))} -> {_show(b.get(k, '<unset>'))}" for k in diff[:4])
    more = f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""
    longer = set(diff) <= set(EXTENDABLE_KEYS) and not set(runtime) >= set(EXTENDABLE_KEYS)
    if longer and "extend" in flags:
        hint = f"; to train it longer add {flags['extend']} (the schedule is laid over the new length from the saved step)"
    else:
        hint = f"; use the same values or another {flags['run_dir']}"
        if "resume" in flags:
            hint += f" (with {flags['resume']} to start from this run's weights)"
    raise UserError(f"cannot resume {where}: the recipe differs from its {what} in {len(diff)} key(s) that change "
                    f"training: {shown}{more}{hint}")
