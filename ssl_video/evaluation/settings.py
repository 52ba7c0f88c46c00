"""The settings of every evaluation protocol: plain dataclasses, loaded with :func:`ssl_video.config.from_dict`
(so an unknown key or a wrong type is a one-line error naming the key). Importing this module loads no torch:
the command line builds its parser from them. The seed and the device are run options (``--seed``,
``--device``): a protocol receives them from :class:`~ssl_video.evaluation.runner.EvalInputs`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ssl_video.errors import ConfigError

__all__ = ["ProbeSettings", "RetrievalSettings", "FinetuneSettings", "PoolingSettings", "PoolingEvalSettings",
           "TemporalSettings"]


def _positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ConfigError(name, f"must be positive, got {value}")


@dataclass(frozen=True)
class ProbeSettings:
    """Linear probe: the L2 penalties tried and the held-out part of the training set that picks one."""

    l2_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    holdout_fraction: float = 0.25
    max_iter: int = 300
    seed: int = 0

    def check(self) -> None:
        _positive(self, "holdout_fraction", "max_iter")
        if not self.l2_grid or min(self.l2_grid) < 0 or self.holdout_fraction >= 1:
            raise ConfigError("l2_grid" if self.holdout_fraction < 1 else "holdout_fraction",
                              "needs non-negative penalties and a held-out fraction below 1")


@dataclass
class RetrievalSettings:
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])  # recall@k

    def check(self) -> None:
        if not self.ks or min(self.ks) <= 0:
            raise ConfigError("ks", f"needs positive values, got {self.ks}")


@dataclass
class FinetuneSettings:
    """Fine-tuning: the training recipe is the shipped STiCA/GDT fragment
    (``ssl_video/evaluation/finetune_recipe.yaml``) <- ``recipe`` <- dotted ``overrides`` (the keys of
    ``ssl-video pretrain``); the test views are ``clips`` (a run option) x ``crops``, averaged."""

    recipe: str | None = field(default=None, metadata={"path": "file"})  # a recipe fragment (YAML)
    overrides: list[str] = field(default_factory=list)  # e.g. optim.lr=0.01
    crops: int = 3  # spatial crops per test clip: 1 centre, 3 along the long side
    average: Literal["softmax", "logits"] = "softmax"  # what is averaged over the test views

    def check(self) -> None:
        from ssl_video.evaluation.finetune_recipe import check_recipe

        _positive(self, "crops")
        check_recipe(self)


@dataclass
class PoolingSettings:
    """Everything that defines a run besides the data (written into the report)."""

    clusters: int = 64
    audio_clusters: int | None = None  # two streams: clusters of the audio head (None: clusters // 2)
    gating: bool = True
    classifier: str = "auto"  # auto: MoE for multi-label, linear for multi-class
    hidden: int = 512
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_clips: int = 300
    seed: int = 0
    device: str = "auto"
    head_kwargs: dict = field(default_factory=dict)

    def classifier_for(self, multilabel: bool) -> str:
        if self.classifier == "auto":
            return "moe" if multilabel else "linear"
        return self.classifier


@dataclass
class PoolingEvalSettings(PoolingSettings):
    """The pooling protocol: :class:`PoolingSettings` (``batch_size`` is the heads' training batch) plus what
    is pooled: a dataset's cached clip features (with ``--encoder``), or feature files."""

    heads: list[str] = field(default_factory=lambda: ["netvlad"])  # or ["all"]
    features: str | None = field(default=None, metadata={"path": "any"})  # .h5 file or directory of .npy
    labels: str | None = field(default=None, metadata={"path": "file"})  # CSV video,label[,label...]
    audio_features: str | None = field(default=None, metadata={"path": "any"})  # second stream
    multilabel: bool = False

    def check(self) -> None:
        from ssl_video.models.pooling import list_pooling_heads

        _positive(self, "clusters", "audio_clusters", "hidden", "epochs", "lr", "batch_size", "max_clips")
        if self.classifier not in ("auto", "linear", "moe"):
            raise ConfigError("classifier", f"expected one of 'auto', 'linear', 'moe', got {self.classifier!r}")
        known = list_pooling_heads()
        unknown = [h for h in self.heads if h not in (*known, "all")]
        if unknown or not self.heads:
            raise ConfigError("heads", f"unknown head '{unknown[0] if unknown else ''}'; choose from "
                                       f"{', '.join(known)} or all")

    def head_names(self) -> list[str]:
        from ssl_video.models.pooling import list_pooling_heads

        return list(list_pooling_heads()) if "all" in self.heads else list(self.heads)

    def training(self, seed: int, device: str) -> PoolingSettings:
        """The heads' plain :class:`PoolingSettings`, with the run's seed and device."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(PoolingSettings)}
        return PoolingSettings(**{**values, "seed": seed, "device": device})


@dataclass
class TemporalSettings:
    """Ground truth of the foreground/background probe. With a dataset root (a suite's ``--root tsp=DIR``)
    relative paths are under it, and the defaults are ``train_groundtruth.csv``, ``val_groundtruth.csv``
    (when it exists) and ``videos/``."""

    gt: str | None = None  # TSP ground-truth CSV of the probe's training clips
    test_gt: str | None = None  # of the test clips (None: hold out test_fraction of the videos)
    videos: str | None = None  # directory holding the CSVs' filenames
    test_fraction: float = 0.3

    def check(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError("test_fraction", f"must be in (0, 1), got {self.test_fraction}")
