"""What a run shows while it trains: metric windows, metrics.jsonl, train.log, TensorBoard and the progress.

Only the main process writes; the others hold a :class:`TrainingLog` that does nothing but take part in
the metric all-reduce (which every process must join). On a terminal the progress is a bar redrawn in
place; when the output is a file or a pipe (Slurm logs, ``| tee``) it is one plain line per logged step.
Every message and step line also goes to ``RUN/train.log``; the resolved recipe is logged once per start
(TensorBoard text ``recipe`` and hyper-parameters ``hparams``).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from ssl_video.engine.run_dir import MetricsLog, RunDir
from ssl_video.files import open_log

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


def flat_config(config: dict) -> dict:
    """The recipe as ``{"dotted.key": scalar}`` (lists and None as JSON text): what trackers take as
    hyper-parameters."""
    from ssl_video.engine.checkpoint import flatten

    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in flatten(config).items()}


class TrainingLog:
    """metrics.jsonl, train.log, TensorBoard, other trackers and the progress of one run (inactive on processes
    other than rank 0).

    ``hparams``: the resolved recipe, logged once. ``interactive``: draw a progress bar (default: when
    stderr is a terminal); otherwise each logged step prints one plain line."""

    def __init__(self, run: RunDir, *, main: bool, start_step: int, total_steps: int, name: str,
                 tensorboard: bool, progress: bool, hparams: dict | None = None, interactive: bool | None = None,
                 trackers=()):
        from tqdm.auto import tqdm

        self.main = main
        self.trackers = list(trackers) if main else []  # Accelerate trackers (W&B, MLflow): log(values, step), finish()
        self.total_steps = total_steps
        self.metrics = MetricsLog(run.metrics, start_step) if main else None
        self.file = open_log(run.log) if main else None
        self.writer = None
        if main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run.tb), purge_step=start_step + 1)
        interactive = sys.stderr.isatty() if interactive is None else interactive
        self.plain = main and progress and not interactive
        self.bar = tqdm(total=total_steps, initial=start_step, desc=name, unit="step", dynamic_ncols=True,
                        disable=not (main and progress and interactive))
        if main and hparams is not None:
            self._hparams(hparams, start_step)

    def _hparams(self, config: dict, step: int) -> None:
        from ssl_video.config import dump_yaml

        text = dump_yaml(config)
        self._to_file(f"recipe:\n{text}")
        if self.writer is not None:
            self.writer.add_text("recipe", "```yaml\n" + text + "```", step)
            self.writer.add_hparams(flat_config(config), {}, run_name=".")

    def _to_file(self, text: str) -> None:
        if self.file is not None:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text.rstrip()}\n")
            self.file.flush()

    def message(self, text: str) -> None:
        if self.main:
            from tqdm.auto import tqdm

            tqdm.write(f"[ssl-video] {text}")
            self._to_file(text)

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
        for tracker in self.trackers:
            tracker.log({k: v for k, v in metrics.items() if k not in ("step", "time")}, step=step)
        if "loss" in metrics:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                          if k not in ("step", "time", "epoch") and not k.startswith("lr/") and isinstance(v, (int, float)))
        line = f"step {step}/{self.total_steps}  {shown}"
        self._to_file(line)
        if self.plain:
            print(f"[ssl-video] {line}", flush=True)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.file is not None:
            self.file.close()
