"""The recipe schema: everything a job reads from its YAML file, as typed dataclasses.

Sections are added here as capabilities land (model, method, optimisation, trainer); unknown keys are
always an error, so a typo can never be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_video.data.clip_dataset import ClipConfig
from ssl_video.methods.stica import StiCAConfig
from ssl_video.methods.tsp import TSPConfig

__all__ = ["DataConfig", "OptimConfig", "TrainerConfig", "FinetuneConfig", "StiCAConfig", "TSPConfig", "Recipe"]


@dataclass
class DataConfig:
    dataset: Literal["ucf101", "hmdb51", "kinetics", "folder", "synthetic", "tsp"] = "synthetic"
    root: str | None = field(default=None, metadata={"path": "dir"})
    videos: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    splits: str | None = field(default=None, metadata={"path": "dir"})  # instead of root
    split: str = "1"
    subset: str | None = "train"  # None: every video of the split
    clip: ClipConfig = field(default_factory=ClipConfig)
    batch_size: int = 8  # per process
    num_workers: int = 2
    seed: int = 0


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (``ssl_video.engine.schedule``)."""

    name: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: float = 0.1  # peak learning rate; a method's parameter group gets lr * its lr_scale
    lr_scaling: Literal["none", "world_size"] = "none"  # world_size: lr x number of processes
    weight_decay: float = 1e-5  # for groups that do not set their own
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8  # adam, adamw
    clip_grad_norm: float | None = None  # max global gradient norm; None: no clipping
    schedule: Literal["cosine", "constant", "step"] = "cosine"  # after the warm-up
    unit: Literal["epochs", "steps"] = "epochs"  # of warmup and milestones
    warmup: float = 0.0  # linear warm-up length
    warmup_start_factor: float = 0.0  # lr at the first step = lr * this
    final_factor: float = 0.0  # cosine: lr at the last step = lr * this
    milestones: list[float] = field(default_factory=list)  # step: lr x gamma at each
    gamma: float = 0.1  # step


@dataclass
class TrainerConfig:
    """How the shared training loop runs (``ssl_video.engine.trainer``).

    Training lasts ``max_steps`` optimizer steps, or ``epochs`` passes over the training set when
    ``max_steps`` is None; the schedule is laid out over that length. ``stop_at_step`` only stops the run
    early (with a checkpoint), leaving the schedule as it is: rerun with a later value to go on.
    """

    epochs: float = 1.0
    max_steps: int | None = None
    grad_accum: int = 1  # micro-batches of data.batch_size per optimizer step
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"  # CUDA only; always off on the CPU
    compile: bool = False  # torch.compile the method
    sync_batchnorm: bool = False  # BatchNorm statistics over every process (CUDA, several processes)
    find_unused_parameters: bool = False  # DDP option for methods that skip parameters in some steps
    deterministic: bool = True  # deterministic kernels; false on GPUs for speed (cuDNN autotuning)
    log_every: int = 10  # steps between metric lines (metrics.jsonl, TensorBoard)
    checkpoint_every: int = 500  # steps between checkpoints/last.pt; 0: only at the end and on signals
    keep_every: int = 0  # steps between kept checkpoints/step_<N>.pt; 0: none
    stop_at_step: int | None = None  # stop early at this step (checkpoint written)
    progress: bool = True  # progress bar on the terminal
    tensorboard: bool = True  # event files in RUN/tb


@dataclass
class FinetuneConfig:
    """Supervised classification of ``data`` with a zoo video encoder (method ``finetune``)."""

    encoder: str | None = "r2plus1d_18"  # zoo name; None: the architecture of ``init``
    encoder_args: dict[str, Any] = field(default_factory=dict)  # create_encoder overrides
    init: str | None = field(default=None, metadata={"path": "dir"})  # exported encoder dir; None: random init
    dropout: float = 0.5  # before the linear classifier
    backbone_lr_scale: float = 0.1  # encoder lr = optim.lr x this (the head uses optim.lr)
    freeze_backbone: bool = False  # train the classifier only (encoder kept in eval mode)
    label_smoothing: float = 0.0
    num_classes: int = 0  # 0: the number of classes of the dataset


@dataclass
class Recipe:
    name: str = "unnamed"
    seed: int = 0
    method: str = "stica"  # a registered method (ssl_video.methods)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    stica: StiCAConfig = field(default_factory=StiCAConfig)
    tsp: TSPConfig = field(default_factory=TSPConfig)
