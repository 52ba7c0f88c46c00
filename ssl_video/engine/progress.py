"""What a run shows while it trains: metric windows, metrics.jsonl, TensorBoard and the progress bar.

Only the main process writes; the others hold a :class:`TrainingLog` that does nothing but take part in
the metric all-reduce (which every process must join).
"""

from __future__ import annotations

import time

import torch

from ssl_video.engine.run_dir import MetricsLog, RunDir

__all__ = ["MetricWindow", "TrainingLog", "scalar_terms", "tensorboard_tag"]


class MetricWindow:
    """Metrics summed between two log steps; ``flush`` averages them over steps (and processes)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.clips, self.wait, self.start = 0, 0, 0.0, time.time()

    def add(self, name: str, value: torch.Tensor, weight: float = 1.0) -> None:
        value = value.detach().float().reshape(()) * weight
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def flush(self, accelerator) -> dict[str, float]:
        names = sorted(self.sums)
        out = {}
        if names:
            values = torch.stack([self.sums[n] for n in names]) / max(1, self.steps)
            if accelerator.num_processes > 1:
                values = accelerator.reduce(values, reduction="mean")
            out = dict(zip(names, values.tolist()))
        elapsed = max(time.time() - self.start, 1e-9)
        out["clips_per_s"] = self.clips / elapsed
        out["data_wait"] = min(1.0, self.wait / elapsed)
        self.reset()
        return out


def scalar_terms(out: dict) -> dict[str, torch.Tensor]:
    """The one-element tensors of a method's output (what is logged)."""
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def tensorboard_tag(key: str) -> str:
    if key.startswith("val/"):
        return key
    if key.startswith("lr"):
        return key if "/" in key else "lr/all"
    if key in ("clips_per_s", "data_wait", "epoch"):
        return f"perf/{key}"
    return f"train/{key}"


class TrainingLog:
    """metrics.jsonl, TensorBoard and the progress bar of one run (inactive on processes other than rank 0)."""

    def __init__(self, run: RunDir, *, main: bool, start_step: int, total_steps: int, name: str,
                 tensorboard: bool, progress: bool):
        from tqdm.auto import tqdm

        self.main = main
        self.metrics = MetricsLog(run.metrics, start_step) if main else None
        self.writer = None
        if main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run.tb), purge_step=start_step + 1)
        self.bar = tqdm(total=total_steps, initial=start_step, desc=name, unit="step", dynamic_ncols=True,
                        disable=not (main and progress))

    def message(self, text: str) -> None:
        if self.main:
            from tqdm.auto import tqdm

            tqdm.write(f"[ssl-video] {text}")

    def step(self) -> None:
        self.bar.update(1)

    def write(self, metrics: dict, step: int) -> None:
        if not self.main:
            return
        self.metrics.write(metrics)
        if self.writer is not None:
            for key, value in metrics.items():
                if key not in ("step", "time"):
                    self.writer.add_scalar(tensorboard_tag(key), value, step)
        if "loss" in metrics:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.metrics is not None:
            self.metrics.close()
