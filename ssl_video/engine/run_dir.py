"""The run directory: everything one training run writes, in one place.

::

    RUN/
      config.yaml           the resolved recipe of the latest start (a valid recipe: pretrain it to resume)
      env.json              package versions, git revision, command line, host, processes, devices
                            (the latest start; earlier starts under "previous_starts")
      metrics.jsonl         one JSON object per logged step: loss terms, lr, clips/s, data-wait fraction
      train.log             what the run printed (messages and one line per logged step), appended per start
      tb/                   TensorBoard event files (the same scalars)
      checkpoints/last.pt   the latest checkpoint (what resume and ``ssl-video export`` read)
      checkpoints/step_<N>.pt  kept every ``trainer.keep_every`` steps
      checkpoints/best.pt   the epoch end with the best ``trainer.best_metric`` on the validation set
      checkpoints/best.json which epoch that is, and the value (read back on resume)
      summary.json          written when the process stops: status, step, seconds, last metrics

Only the main process writes here.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ssl_video.files import write_json

__all__ = ["RunDir", "default_run_dir", "git_revision", "environment", "write_env", "MetricsLog"]

PACKAGES = ("ssl_video", "torch", "torchvision", "torchaudio", "torchcodec", "accelerate", "timm", "numpy")


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def best_record(self) -> Path:
        return self.checkpoints / "best.json"

    def kept(self, step: int) -> Path:
        return self.checkpoints / f"step_{step}.pt"


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    return Path(root) / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"


def git_revision(path: str | Path | None = None) -> str | None:
    """Commit of the source tree holding ``path`` (default: this package), or None outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _git_dirty(path: Path) -> bool | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(world_size: int, device: str) -> dict:
    import torch

    source = Path(__file__).resolve().parent
    cuda = torch.cuda.is_available()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "git_revision": git_revision(source),
        "git_dirty": _git_dirty(source),
        "world_size": world_size,
        "device": device,
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def write_env(run: RunDir, env: dict) -> None:
    """Write ``env.json``; a resumed run keeps the environments of the earlier starts."""
    previous = []
    if run.env.is_file():
        try:
            old = json.loads(run.env.read_text())
            previous = [*old.pop("previous_starts", []), old]
        except (OSError, ValueError):
            previous = []
    write_json(run.env, {**env, "previous_starts": previous})


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl``; on (re)start drops lines past the step resumed from."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        if path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= start_step:
                        kept.append(line)
                except ValueError:
                    continue  # a line cut short by a kill
            path.write_text("".join(f"{line}\n" for line in kept))
        self._file = open(path, "a")  # noqa: SIM115 (kept open for the run)

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
