"""Validation at epoch ends, and which epoch is the best one.

A method that has a validation set (``Method.validation_dataset``) is evaluated on all of it after every
epoch: in eval mode, without gradients, each process on its own share of the samples; each metric is a
(sum, count) pair added over the batches and then over the processes, so the value does not depend on the
number of processes or the batch size. The metrics are logged as ``val/<name>``. ``trainer.best_metric``
names the one that decides ``checkpoints/best.pt``; ``checkpoints/best.json`` records its epoch and value
(read back when a run resumes). The validation set is the method's validation split, never a test split.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ssl_video.engine.batches import collate, to_device

__all__ = ["validation_loader", "validate", "BestEpoch"]


def validation_loader(dataset, batch_size: int, world: int, rank: int, num_workers: int, pin_memory: bool):
    """This process's batches: samples ``rank, rank + world, ...`` of the validation set, in order."""
    from torch.utils.data import DataLoader

    mine = list(range(rank, len(dataset), world))
    batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                      collate_fn=getattr(dataset, "collate_fn", None) or collate, pin_memory=pin_memory)


def validate(method, loader, accelerator) -> dict[str, float]:
    """``{"val/<name>": value}`` over the whole validation set (every process gets the same numbers)."""
    device, world = accelerator.device, accelerator.num_processes
    sums: dict[str, list[float]] = {}
    method.eval()
    try:
        with torch.no_grad(), accelerator.autocast():
            for batch in loader:
                batch.pop("skipped", None)
                for name, (total, count) in method.validation_terms(to_device(batch, device)).items():
                    entry = sums.setdefault(name, [0.0, 0.0])
                    entry[0] += float(total)
                    entry[1] += float(count)
    finally:
        method.train()
    if world > 1:
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, sums)
        sums = {}
        for part in gathered:
            for name, (total, count) in part.items():
                entry = sums.setdefault(name, [0.0, 0.0])
                entry[0] += total
                entry[1] += count
    means = {name: (total / count if count else math.nan) for name, (total, count) in sorted(sums.items())}
    return {f"val/{name}": value for name, value in method.validation_summary(means).items()}


class BestEpoch:
    """The best value of one validation metric so far (``max`` or ``min``), kept in ``best.json``."""

    def __init__(self, metric: str | None, mode: str, record: Path):
        self.metric, self.mode, self.record = metric, mode, record
        self.value: float | None = None
        self.epoch: int | None = None
        if metric is not None and record.is_file():
            import json

            saved = json.loads(record.read_text())
            if saved.get("metric") == metric and saved.get("mode") == mode:
                self.value, self.epoch = saved.get("value"), saved.get("epoch")

    def improves(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` beat the best so far (a missing or NaN value never does)."""
        if self.metric is None:
            return False
        if self.metric not in metrics:
            from ssl_video.errors import ConfigError

            raise ConfigError("trainer.best_metric", f"{self.metric!r} is not a validation metric of this method "
                              f"(it gives {', '.join(sorted(metrics))})")
        value = metrics[self.metric]
        if value != value:
            return False
        if self.value is None:
            return True
        return value > self.value if self.mode == "max" else value < self.value

    def update(self, metrics: dict[str, float], epoch: int, step: int, write: bool) -> None:
        from ssl_video.files import write_json

        self.value, self.epoch = metrics[self.metric], epoch
        if write:
            write_json(self.record, {"metric": self.metric, "mode": self.mode, "value": self.value, "epoch": epoch,
                                     "step": step, "metrics": metrics})
