"""The ``optim:`` and ``trainer:`` sections: how any method is optimised and how the shared loop runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ssl_video.config import Section, bounded
from ssl_video.errors import ConfigError

__all__ = ["OptimConfig", "TrainerConfig"]


@dataclass
class OptimConfig(Section):
    """Optimizer and learning-rate schedule (``ssl_video.engine.schedule``)."""

    name: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: float = bounded(0.1, gt=0)  # peak learning rate; a method's parameter group gets lr * its lr_scale
    lr_scaling: Literal["none", "world_size"] = "none"  # world_size: lr x number of processes
    weight_decay: float = bounded(1e-5, ge=0)  # for groups that do not set their own
    momentum: float = bounded(0.9, ge=0, lt=1)  # sgd
    nesterov: bool = False  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = bounded(1e-8, gt=0)  # adam, adamw
    clip_grad_norm: float | None = bounded(None, gt=0)  # max global gradient norm; None: no clipping
    schedule: Literal["cosine", "constant", "step"] = "cosine"  # after the warm-up
    unit: Literal["epochs", "steps"] = "epochs"  # of warmup and milestones
    warmup: float = bounded(0.0, ge=0)  # linear warm-up length
    warmup_start_factor: float = bounded(0.0, ge=0, le=1)  # lr at the first step = lr * this
    final_factor: float = bounded(0.0, ge=0)  # cosine: lr at the last step = lr * this
    milestones: list[float] = field(default_factory=list)  # step: lr x gamma at each
    gamma: float = bounded(0.1, gt=0)  # step

    def check(self) -> None:
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"each must be in [0, 1), got {list(self.betas)}")
        if any(m < 0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError("milestones", f"must be >= 0 and increasing, got {list(self.milestones)}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov", "needs name: sgd with momentum > 0")


@dataclass
class TrainerConfig(Section):
    """How the shared training loop runs (``ssl_video.engine.trainer``).

    Training lasts ``max_steps`` optimizer steps, or ``epochs`` passes over the training set when
    ``max_steps`` is None; the schedule is laid out over that length. ``stop_at_step`` only stops the run
    early (with a checkpoint), leaving the schedule as it is: rerun with a later value to go on.
    """

    epochs: float = bounded(1.0, gt=0)
    max_steps: int | None = bounded(None, ge=1)
    grad_accum: int = bounded(1, ge=1)  # micro-batches of data.batch_size per optimizer step
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"  # CUDA only; off on the CPU unless cpu_autocast
    # bf16 autocast on the CPU too (rarely faster; exercises the AMP path anywhere). PyTorch 2.14's CPU bf16
    # Conv3d backward can return NaN weight gradients for a (3,1,1) kernel on a 2-step time axis: the trainer's
    # gradient check then stops the run (exit 4) rather than train on them
    cpu_autocast: bool = False
    compile: bool = False  # torch.compile the method
    sync_batchnorm: bool = False  # BatchNorm statistics over every process (CUDA, several processes)
    find_unused_parameters: bool = False  # DDP option for methods that skip parameters in some steps
    deterministic: bool = True  # deterministic kernels; false on GPUs for speed (cuDNN autotuning)
    log_every: int = bounded(10, ge=1)  # steps between metric lines (metrics.jsonl, TensorBoard)
    checkpoint_every: int = bounded(500, ge=0)  # steps between checkpoints/last.pt; 0: only at the end and on signals
    keep_every: int = bounded(0, ge=0)  # steps between kept checkpoints/step_<N>.pt; 0: none
    stop_at_step: int | None = bounded(None, ge=0)  # stop early at this step (checkpoint written)
    progress: bool = True  # progress bar on the terminal
    tensorboard: bool = True  # event files in RUN/tb
    # more experiment trackers, through Accelerate's log_with (their packages installed: pip install
    # "ssl_video[wandb]" / "ssl_video[mlflow]"); they receive the recipe once and every logged metric line
    trackers: list[Literal["wandb", "mlflow"]] = field(default_factory=list)
    # validation at every epoch end runs when the method has a validation set (e.g. tsp.valid_csv);
    # best_metric names the one of its metrics ("val/...") that keeps checkpoints/best.pt
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"

    def check(self) -> None:
        if self.best_metric is not None and not self.best_metric.startswith("val/"):
            raise ConfigError("best_metric", "must name a validation metric ('val/...'): best.pt is chosen on the "
                              f"validation split only, got {self.best_metric!r}")
