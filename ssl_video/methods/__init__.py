"""Training methods: what is learned, never how (the trainer owns devices, optimizers and files).

The contract every method follows is :class:`ssl_video.methods.base.Method`. Methods register with
:func:`register_method`; the registry is looked up by the recipe's ``method:`` name. Shipped methods are
imported on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ssl_video.errors import UserError
from ssl_video.recipe import known_methods, register_method_name

__all__ = ["register_method", "method_class", "build_method", "build_model", "list_methods"]

_CLASSES: dict[str, Any] = {}
_MODULES = {"stica": "ssl_video.methods.stica", "tsp": "ssl_video.methods.tsp", "finetune": "ssl_video.methods.finetune"}


def register_method(name: str, section: str | None = None):
    """Class decorator: ``name`` (a recipe's ``method:``) builds with ``cls.from_recipe`` and
    ``cls.train_dataset``; ``section`` is the recipe section holding its settings, if any."""

    def decorator(cls):
        _CLASSES[name] = cls
        register_method_name(name, section)
        return cls

    return decorator


def method_class(name: str):
    """The registered class of method ``name`` (its module imported on first use)."""
    if name not in _CLASSES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _CLASSES:
        raise UserError(f"unknown method '{name}' (known: {', '.join(list_methods())})")
    return _CLASSES[name]


def build_model(recipe):
    """The method module of ``recipe`` (no data is read beyond what the model's shape needs)."""
    return method_class(recipe.method).from_recipe(recipe)


def build_method(recipe) -> tuple:
    """``(method, train_dataset)`` for ``recipe`` (the data first: its errors are the likelier ones)."""
    cls = method_class(recipe.method)
    dataset = cls.train_dataset(recipe)
    return cls.from_recipe(recipe), dataset


def check_training_data(recipe) -> None:
    """Build ``recipe``'s training set once and drop it: a missing root, split or CSV is a one-line
    :class:`~ssl_video.errors.UserError` now (before a job waits in a queue), not when the job starts."""
    method_class(recipe.method).train_dataset(recipe)


def list_methods() -> list[str]:
    return sorted(set(_CLASSES) | set(_MODULES) | set(known_methods()))
