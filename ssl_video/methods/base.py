"""The Method contract as code: what every training method is, and what the trainer may use of it.

A method is a :class:`Method` (a ``torch.nn.Module``) that says what is learned, never how: the trainer
owns devices, optimizers, files and the loop.

- ``forward(batch) -> dict``: the batch from the method's dataset, already on the right device; returns
  scalars, ``"loss"`` (the total to minimise) plus any named terms to log. The same terms at every step on
  every process.
- ``ENCODERS``: role (``"video"``, ``"audio"``) -> attribute holding that encoder. :meth:`encoders` follows
  from it (``{"name", "args", "prefix"}`` per role, written into every checkpoint so ``ssl-video export``
  pulls the backbone out without guessing).
- :meth:`parameter_groups`: ``{"name", "params", "lr_scale", "weight_decay"}`` dicts (``None`` = the
  recipe's weight decay); build them with :meth:`group`, which keeps only trainable parameters.
- :meth:`freeze`: a frozen part is not trained and keeps its BatchNorm statistics (eval mode whenever the
  method is put in training mode), unless asked to let them follow the method's mode.
- :meth:`validation_dataset` / :meth:`validation_terms` / :meth:`validation_summary`: an optional
  validation split, evaluated by the trainer at every epoch end (:mod:`ssl_video.engine.validation`).
- :meth:`set_step`: the trainer hands the global optimizer step in before every step; a method that
  draws per-step randomness (STiCA's crop offsets) derives it from ``(seed, step)``, so a resumed run and
  every process agree without any state in the checkpoint.

Building is split in two so evaluation can rebuild a model without reading data: ``from_recipe(recipe)``
gives the model, ``train_dataset(recipe)`` the training set (a map-style dataset whose item ``key`` is
``epoch * len + index``, see the trainer).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

__all__ = ["Method", "encoder_entry"]


def encoder_entry(encoder: nn.Module, prefix: str) -> dict[str, Any]:
    """What a checkpoint records of one encoder: zoo name, constructor arguments, key prefix."""
    return {"name": encoder.encoder_name, "args": dict(getattr(encoder, "encoder_args", None) or {}),
            "prefix": prefix}


class Method(nn.Module):
    """Base class of training methods (see the module docstring)."""

    ENCODERS: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._frozen: list[nn.Module] = []
        self.step = 0

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    def from_recipe(cls, recipe) -> Method:
        raise NotImplementedError(f"{cls.__name__} does not build from a recipe")

    @classmethod
    def train_dataset(cls, recipe):
        raise NotImplementedError(f"{cls.__name__} has no training set")

    @classmethod
    def validation_dataset(cls, recipe):
        """The validation split (evaluated at every epoch end), or None: no validation."""
        return None

    # -- the contract the trainer uses ------------------------------------------------------------------

    def encoders(self) -> dict[str, dict[str, Any]]:
        out = {}
        for role, attribute in self.ENCODERS.items():
            encoder = getattr(self, attribute, None)
            if encoder is not None:
                out[role] = encoder_entry(encoder, f"{attribute}.")
        return out

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Default: every trainable parameter in one group at the recipe's lr."""
        return [self.group("all", self)]

    def validation_terms(self, batch: dict) -> dict[str, tuple[Any, Any]]:
        """``name -> (sum, count)`` of one validation batch (eval mode, no gradients); default: the scalar
        terms of ``forward`` weighted by the batch size."""
        out = self(batch)
        size = next(v.shape[0] for v in batch.values() if hasattr(v, "shape") and v.ndim > 0)
        return {k: (v.detach().float() * size, size) for k, v in out.items()
                if hasattr(v, "numel") and v.numel() == 1}

    def validation_summary(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the validation means (default: the means themselves)."""
        return means

    def set_step(self, step: int) -> None:
        """The global optimizer step about to be taken (handed in by the trainer)."""
        self.step = int(step)

    # -- helpers for subclasses -------------------------------------------------------------------------

    @staticmethod
    def group(name: str, *modules: nn.Module | None, lr_scale: float = 1.0,
              weight_decay: float | None = None) -> dict[str, Any]:
        """A parameter group of the trainable parameters of ``modules`` (``None`` entries ignored)."""
        params = [p for module in modules if module is not None for p in module.parameters() if p.requires_grad]
        return {"name": name, "params": params, "lr_scale": float(lr_scale), "weight_decay": weight_decay}

    def freeze(self, module: nn.Module, batchnorm: str = "frozen") -> nn.Module:
        """Stop training ``module``: no gradients; its BatchNorm statistics stay as they are
        (``batchnorm="frozen"``: eval mode), or keep following the method's mode (``"train"``)."""
        if batchnorm not in ("frozen", "train"):
            raise ValueError(f"batchnorm must be 'frozen' or 'train', got {batchnorm!r}")
        module.requires_grad_(False)
        if batchnorm == "frozen":
            self._frozen.append(module)
            module.eval()
        return module

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self
