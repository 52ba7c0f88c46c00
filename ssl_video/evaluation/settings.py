"""The settings of every evaluation protocol: plain dataclasses, loaded with :func:`ssl_video.config.from_dict`
(so an unknown key or a wrong type is a one-line error naming the key). Importing this module loads no torch:
the command line builds its parser from them. The seed and the device are run options (``--seed``,
``--device``): a protocol receives them from :class:`~ssl_video.evaluation.runner.EvalInputs`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_video.errors import ConfigError

__all__ = ["ProbeSettings", "RetrievalSettings", "FinetuneSettings", "PoolingSettings", "PoolingEvalSettings",
           "TemporalSettings", "PAPER_POOLING", "expand_pooling_preset"]


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


# `preset: paper`: the published learnable-pooling runs (WILLOW README, gated NetVLAD/NetFV: --batch_size=80
# --base_learning_rate=0.0002 --netvlad_cluster_size=256 / --fv_cluster_size=128 --netvlad_hidden_size=1024
# --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --netvlad_relu=False --gating=True --moe_prob_gating=True;
# train.py: clip_gradient_norm 1.0, learning_rate_decay_examples 4M) and the official model code's behaviour
# (docs/FIDELITY.md). Keys given explicitly win over the preset's.
PAPER_POOLING: dict = {
    "clusters": 256, "hidden": 1024, "lr": 2e-4, "batch_size": 80, "max_clips": 300, "gating": True,
    "input_bn": True, "hidden_bn": False, "gating_bn": True, "output_gating": "official", "moe_gate_bias": False,
    "moe_l2": 1e-6, "netfv_second_order": "global", "attention_init": "official", "clip_sampling": "with_replacement",
    "clip_grad": 1.0, "lr_decay": 0.8, "lr_decay_examples": 4_000_000, "multilabel_loss": "sum",
    "multilabel_loss_form": "official", "batch_norm_numerics": "official", "l2_eps": "official",
    "classifier_init": "official", "head_kwargs": {"netfv": {"clusters": 128}},
}
PRESETS = {"ours": {}, "paper": PAPER_POOLING}


def expand_pooling_preset(data: dict) -> dict:
    """The settings mapping with its ``preset``'s values filled in under the keys it does not give (the one
    place a preset is resolved; ``head_kwargs`` merge per head)."""
    name = data.get("preset", "ours")
    preset = PRESETS.get(name) if isinstance(name, str) else None  # an unknown name: from_dict says so
    if not preset:
        return dict(data)
    out = {**preset, **data}
    given = data.get("head_kwargs")
    if isinstance(given, dict):
        merged = {head: dict(kw) for head, kw in preset["head_kwargs"].items()}
        for head, kw in given.items():
            merged[head] = {**merged.get(head, {}), **kw} if isinstance(kw, dict) else kw
        out["head_kwargs"] = merged
    return out


@dataclass
class PoolingSettings:
    """Everything that defines a run besides the data (written into the report). The second block are the
    switches restoring the official code's behaviour (docs/FIDELITY.md); ``preset: paper`` sets them all."""

    clusters: int = 64
    audio_clusters: int | None = None  # two streams: clusters of the audio head (None: clusters // 2)
    gating: bool = True
    # auto: MoE for multi-label, linear for multi-class; tanh_mlp: the Attention Clusters reference head
    # (dropout 0.5 -> FC 1024 tanh -> FC 4096 tanh -> logistic) in place of FC/BN/gating/classifier
    classifier: str = "auto"
    hidden: int = 512
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_clips: int = 300
    seed: int = 0
    device: str = "auto"
    head_kwargs: dict[str, Any] = field(default_factory=dict)  # head name -> constructor keywords
    preset: Literal["ours", "paper"] = "ours"  # paper: PAPER_POOLING under every key not given
    # -- official behaviour (LOUPE loupe.py, WILLOW frame_level_models.py / video_level_models.py / train.py)
    input_bn: bool = False  # BatchNorm over the clip features before pooling (official: before the split)
    hidden_bn: bool = True  # FC without bias + BN (ours); False: FC with a bias, no BN (netvlad_relu=False)
    gating_bn: bool = False  # Context Gating sigmoid(BN(XW)) without bias (official) instead of sigmoid(XW + b)
    output_gating: Literal["ours", "official"] = "ours"  # official: only MoE probabilities, p * sigmoid(BN(pW))
    moe_gate_bias: bool = True  # official: the MoE gate projection has no bias
    moe_l2: float = 0.0  # official 1e-6: moe_l2 * |W|^2 / 2 of the MoE gate and expert weights added to the loss
    netfv_second_order: Literal["intra", "global"] = "intra"  # official: global L2 only on NetFV's second order
    attention_init: Literal["ours", "official"] = "ours"  # Attention Clusters alpha/beta: 1/0, or N(0, K^-1/4)
    # subset: a random ordered subset of max_clips clips (training), evenly spaced ones (testing);
    # with_replacement: max_clips clips drawn uniformly with replacement, in training and testing (official
    # SampleRandomFrames; the test draw is seeded)
    clip_sampling: Literal["subset", "with_replacement"] = "subset"
    clip_grad: float | None = None  # clip each parameter's gradient norm to this (TF-slim create_train_op)
    lr_decay: float = 1.0  # lr x lr_decay every lr_decay_examples training examples (staircase)
    lr_decay_examples: int = 4_000_000
    multilabel_loss: Literal["mean", "sum"] = "mean"  # sum: over classes, mean over videos (official)
    # logits: binary cross-entropy on the logits (a MoE's probabilities clamped to [1e-6, 1 - 1e-6] first);
    # official: -[y log(p + 1e-5) + (1 - y) log(1 - p + 1e-5)] on the probabilities as computed (WILLOW losses.py)
    multilabel_loss_form: Literal["logits", "official"] = "logits"
    # official: every BatchNorm as TF-slim batch_norm, eps 1e-3, decay 0.999 (momentum 1e-3), moving variance of
    # the biased batch variance; ours: PyTorch's eps 1e-5, momentum 0.1, unbiased
    batch_norm_numerics: Literal["ours", "official"] = "ours"
    l2_eps: Literal["ours", "official"] = "ours"  # NetVLAD family L2 norms floored at 1e-12 (ours) or 1e-6 (TF)
    # official: hidden FC N(0, 1/sqrt(K)) + bias N(0, 0.01), Context Gating N(0, 1/sqrt(dim)), MoE Glorot-uniform
    # weights and zero biases, output gating N(0, 1/sqrt(classes)); ours: PyTorch's defaults
    classifier_init: Literal["ours", "official"] = "ours"

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

    expand_preset = staticmethod(expand_pooling_preset)

    def check(self) -> None:
        from ssl_video.models.pooling import list_pooling_heads

        _positive(self, "clusters", "audio_clusters", "hidden", "epochs", "lr", "batch_size", "max_clips", "clip_grad",
                  "lr_decay", "lr_decay_examples")
        if self.moe_l2 < 0:
            raise ConfigError("moe_l2", f"must be >= 0, got {self.moe_l2}")
        if self.classifier not in ("auto", "linear", "moe", "tanh_mlp"):
            raise ConfigError("classifier", f"expected one of 'auto', 'linear', 'moe', 'tanh_mlp', got "
                              f"{self.classifier!r}")
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
