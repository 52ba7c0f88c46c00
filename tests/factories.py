"""Shared builders for tests: tiny encoders, tiny clip settings and recipes written the way users write them.

Fixtures that make media live in ``conftest.py``; these are plain functions so any test module (or a
subprocess started by one) can use them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ssl_video.recipe import Recipe, load_recipe

TINY = {"width": 0.0625}  # zoo constructor override: a 1/16-width encoder (fast on the CPU)
TINY_VIDEO = {"width": 0.0625, "frames": 4, "crop_size": 32}  # ... with a 4 x 32 x 32 input contract
TINY_AUDIO = {"width": 0.0625, "n_mels": 16, "time_frames": 32}


def tiny_clip(frames: int = 4, fps: float = 8, size: int = 32, audio=None, **video) -> dict:
    """``data.clip`` of a tiny recipe: ``frames`` at ``fps``, decoded at ``size`` and cropped to ``size``."""
    return {"frames": frames, "fps": fps, "resize": size, "audio": audio,
            "video": {"crop": size, "scale": [0.6, 1.0], **video}}


def merge(base: dict, **sections) -> dict:
    """``base`` with each section replaced (non-mappings) or updated key by key (mappings)."""
    data = copy.deepcopy(base)
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return data


def write_recipe(folder: Path, data: dict, name: str | None = None) -> Path:
    """Write ``data`` as a recipe file in ``folder`` (JSON is YAML), a new name each call."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"recipe_{len(list(folder.glob('recipe_*.yaml')))}.yaml")
    path.write_text(json.dumps(data))
    return path


def recipe_from(folder: Path, data: dict, overrides: list[str] | None = None) -> Recipe:
    """The recipe a user would get from ``ssl-video pretrain FILE overrides``."""
    return load_recipe(write_recipe(folder, data), overrides or [])


def assert_same_state(a, b, where: str = "checkpoint") -> None:
    """Two checkpoints (or any nesting of dicts, lists and tensors) hold exactly the same entries and values.

    Every key must be present on both sides (a missing optimizer state entry such as one parameter's
    ``momentum_buffer`` fails), tensors must be bit-identical (dtype, shape and values). Provenance that is not
    training state (``train_seconds``, the last log line's ``metrics``, the ``recipe`` file name, the resolved
    ``config``, whose run-time keys may differ between starts) is skipped at
    the top level."""
    if isinstance(a, dict) and isinstance(b, dict):
        skip = {"train_seconds", "metrics", "recipe", "config"} if where == "checkpoint" else set()
        keys_a, keys_b = set(a) - skip, set(b) - skip
        assert keys_a == keys_b, f"{where}: keys differ: {sorted(map(str, keys_a ^ keys_b))}"
        for key in sorted(keys_a, key=str):
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), f"{where}: tensor vs {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        assert torch.equal(a, b), f"{where}: values differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
