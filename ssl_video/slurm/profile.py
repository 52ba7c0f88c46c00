"""Cluster profiles: what a Slurm job asks for, loaded from ``slurm/<cluster>.yaml``.

A profile is a typed dataclass read by :func:`ssl_video.config.load_config`, so an unknown key or a wrong
type is a one-line error naming the key. ``slurm/example.yaml`` documents every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_video.errors import ConfigError

__all__ = ["SlurmProfile", "load_profile"]


@dataclass
class SlurmProfile:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1  # training jobs; `ssl-video pretrain --nodes N` overrides it
    gpus_per_node: int = 0  # 0: a CPU job (gloo); otherwise one task per GPU (NCCL)
    tasks_per_node: int | None = None  # CPU jobs: processes per node (default 1); with GPUs: gpus_per_node
    cpus_per_task: int = 1  # data-loading workers + 1 is a good value
    mem_gb: float | None = None  # memory per node; None: the partition's default
    time_min: int = 60  # wall-clock limit of one start (a timeout requeues, up to max_num_timeout times)
    constraint: str | None = None  # node features, e.g. "volta32gb"
    signal_delay_s: int = 90  # USR2 this long before the limit: time to finish a step and save
    max_num_timeout: int = 3  # requeues after hitting the time limit (preemptions are not counted)
    job_name: str | None = None  # default: ssl-video-<command or recipe name>
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load ...)
    extra_sbatch: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH option: {exclude: node7}
    python: str | None = None  # interpreter on the compute nodes (default: the one submitting)

    def tasks(self) -> int:
        """Tasks (processes) per node: one per GPU, or ``tasks_per_node`` on CPU profiles."""
        if self.gpus_per_node > 0:
            return self.gpus_per_node
        return self.tasks_per_node or 1

    def check(self) -> SlurmProfile:
        for key in ("nodes", "cpus_per_task", "time_min"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be at least 1, got {getattr(self, key)}")
        for key in ("gpus_per_node", "signal_delay_s", "max_num_timeout"):
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must be 0 or more, got {getattr(self, key)}")
        if self.tasks_per_node is not None:
            if self.tasks_per_node < 1:
                raise ConfigError("tasks_per_node", f"must be at least 1, got {self.tasks_per_node}")
            if self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
                raise ConfigError("tasks_per_node", f"GPU jobs run one task per GPU: leave it out or set it to "
                                  f"gpus_per_node ({self.gpus_per_node})")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ConfigError("mem_gb", f"must be positive, got {self.mem_gb}")
        if self.signal_delay_s >= self.time_min * 60:
            raise ConfigError("signal_delay_s", f"{self.signal_delay_s} s is not shorter than time_min "
                              f"({self.time_min} min)")
        return self


def load_profile(path: str | Path, overrides: list[str] | None = None) -> SlurmProfile:
    from ssl_video.config import load_config

    return load_config(SlurmProfile, path, overrides).check()
