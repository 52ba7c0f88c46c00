"""Shared builders for tests: tiny encoders, tiny clip settings and recipes written the way users write them.

Fixtures that make media live in ``conftest.py``; these are plain functions so any test module (or a
subprocess started by one) can use them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

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
