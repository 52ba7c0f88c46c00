"""Training methods: what is learned, never how (the trainer owns devices, optimizers and files).

A method is a ``torch.nn.Module`` with:

- ``forward(batch: dict[str, Tensor]) -> dict[str, Tensor]``: the batch from the method's dataset, already
  on the right device; returns scalars, ``"loss"`` (the total to minimise) plus any named terms to log.
- ``encoders() -> dict[str, dict]``: role (``"video"``, ``"audio"``) -> ``{"name": zoo name, "args":
  constructor overrides, "prefix": key prefix of that encoder in ``state_dict()``}``; written into every
  checkpoint so ``ssl-video export`` can pull the backbone out without guessing.
- ``parameter_groups() -> list[dict]``: ``{"name": str, "params": list[Parameter], "lr_scale": float,
  "weight_decay": float | None}``; the trainer turns them into optimizer groups (``None`` = the recipe's).

Methods register a builder with :func:`register_method`; a builder takes the resolved recipe and returns
``(method, train_dataset)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssl_video.errors import UserError

__all__ = ["register_method", "build_method", "list_methods"]

_BUILDERS: dict[str, Callable[[Any], tuple]] = {}
_MODULES = {"stica": "ssl_video.methods.stica", "tsp": "ssl_video.methods.tsp", "finetune": "ssl_video.methods.finetune"}


def register_method(name: str):
    def decorator(builder):
        _BUILDERS[name] = builder
        return builder

    return decorator


def build_method(name: str, recipe) -> tuple:
    """``(method, train_dataset)`` for ``recipe``; imports the method's module on first use."""
    if name not in _BUILDERS and name in _MODULES:
        import importlib

        importlib.import_module(_MODULES[name])
    if name not in _BUILDERS:
        raise UserError(f"unknown method '{name}' (known: {', '.join(sorted(set(_BUILDERS) | set(_MODULES)))})")
    return _BUILDERS[name](recipe)


def list_methods() -> list[str]:
    return sorted(set(_BUILDERS) | set(_MODULES))
