"""The recipe schema: everything a job reads from its YAML file, as typed, self-validating dataclasses.

Every section lives in this package and imports nothing heavy (no torch), so ``ssl-video config show``
validates a recipe in a fraction of a second. Each section checks its own values when it is built
(:class:`~ssl_video.config.Section`): an unknown key, a wrong type, a value out of range or values that do
not fit together is one :class:`~ssl_video.errors.ConfigError` naming the dotted key. Nothing downstream
(builders, trainer, CLI) checks recipe values again.

A recipe has one method; only that method's section is written into a run's ``config.yaml`` and compared
on resume (:func:`recipe_dict`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from ssl_video.config import Section, load_config, to_dict
from ssl_video.errors import ConfigError
from ssl_video.recipe.data import AudioFeatures, ClipConfig, ClipSampling, DataConfig, VideoAugment
from ssl_video.recipe.methods import FeatureCropConfig, FinetuneConfig, PoolingConfig, StiCAConfig, TSPConfig
from ssl_video.recipe.training import OptimConfig, TrainerConfig

__all__ = [
    "Recipe", "load_recipe", "recipe_dict", "register_method_name", "known_methods", "METHOD_SECTIONS",
    "DataConfig", "ClipConfig", "ClipSampling", "VideoAugment", "AudioFeatures", "OptimConfig", "TrainerConfig",
    "StiCAConfig", "FeatureCropConfig", "PoolingConfig", "TSPConfig", "FinetuneConfig",
]

# method name -> the recipe section holding its settings (None: the method reads no section of its own)
METHOD_SECTIONS: dict[str, str | None] = {"stica": "stica", "tsp": "tsp", "finetune": "finetune"}


def register_method_name(name: str, section: str | None = None) -> None:
    """Make ``name`` a valid ``method:`` (``ssl_video.methods.register_method`` calls this)."""
    METHOD_SECTIONS.setdefault(name, section)


def known_methods() -> list[str]:
    return sorted(METHOD_SECTIONS)


@dataclass
class Recipe(Section):
    name: str = "unnamed"
    seed: int = 0
    method: str = "stica"  # a registered method (ssl_video.methods)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    stica: StiCAConfig = field(default_factory=StiCAConfig)
    tsp: TSPConfig = field(default_factory=TSPConfig)

    def check(self) -> None:
        if self.method not in METHOD_SECTIONS:
            close = difflib.get_close_matches(self.method, known_methods(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError("method", f"unknown method '{self.method}' ({hint}known: {', '.join(known_methods())})")
        section = self.section()
        if section is not None and hasattr(section, "check_recipe"):
            section.check_recipe(self)

    def section(self):
        """The active method's settings (``None`` for a method without a section)."""
        name = METHOD_SECTIONS.get(self.method)
        return getattr(self, name) if name else None


def inactive_sections(method: str) -> list[str]:
    active = METHOD_SECTIONS.get(method)
    return [s for s in {s for s in METHOD_SECTIONS.values() if s} if s != active]


def recipe_dict(recipe: Recipe) -> dict:
    """The recipe as plain data with only the active method's section (what a run records and compares)."""
    data = to_dict(recipe)
    for name in inactive_sections(recipe.method):
        data.pop(name, None)
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Recipe:
    """``base`` <- YAML ``path`` <- dotted ``overrides``, validated (see the module docstring)."""
    return load_config(Recipe, path, overrides, base=base)
