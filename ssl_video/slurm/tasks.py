"""What runs inside a Slurm job: the callables submitit pickles and calls on every task.

Both are :class:`submitit.helpers.Checkpointable` with the inherited ``checkpoint()``, which only
resubmits the same callable: nothing is saved there. State lives in the run directory and every start
resumes from it.

Who owns the signals. submitit installs a SIGUSR2 handler that calls ``checkpoint()`` and
``scontrol requeue`` at once (on global rank 0), and ignores SIGTERM. A training task replaces both with the
trainer's own handlers while it trains: on SIGUSR2 (sent ``signal_delay_s`` before the time limit, or by
``scancel --signal=USR2``) or SIGTERM (preemption, ``scancel``, ``scontrol requeue``) every rank finishes its
step, the ranks agree, one checkpoint is written and ``train`` returns ``status="stopped"``. Only then, and
only when the stop came from SIGUSR2, rank 0 hands over to submitit's handler, which checks the timeout
budget (``max_num_timeout``), calls ``checkpoint()`` and requeues the job. After SIGTERM nothing is
requeued from here: a preempting Slurm requeues the job itself, and a cancelled job stays cancelled.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import submitit

from ssl_video.slurm import IN_JOB_ENV

__all__ = ["TrainTask", "CommandTask", "prepare_process"]


def prepare_process() -> None:
    """Mark the process as inside a job; one thread per allocated CPU."""
    os.environ[IN_JOB_ENV] = os.environ.get("SLURM_JOB_ID", "1")
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))


class TrainTask(submitit.helpers.Checkpointable):
    """Train a resolved recipe in ``run_dir`` on every task of the job (one task per GPU, or per CPU slot)."""

    def __init__(self, config: dict, run_dir: str, recipe_path: str | None, gpus: bool, start: dict | None = None):
        self.config, self.run_dir, self.recipe_path, self.gpus = config, run_dir, recipe_path, gpus
        self.start = dict(start or {})  # train()'s resume/extend; a requeued job resumes its own run dir

    def __call__(self) -> dict:
        from ssl_video.config import from_dict
        from ssl_video.engine.trainer import train
        from ssl_video.recipe import Recipe

        prepare_process()
        # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT (port from the job id); one GPU per task
        dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=self.gpus,
                                                                     overwrite=True)
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint() + scontrol requeue (rank 0)
        start = dict(getattr(self, "start", {}) or {})
        if start.get("resume") == "never" and (Path(self.run_dir) / "config.yaml").is_file():
            start["resume"] = "auto"  # --fresh was checked at submission; a requeued job resumes its own run
        summary = train(from_dict(Recipe, self.config), self.run_dir, recipe_path=self.recipe_path, **start)
        if summary["status"] == "stopped" and summary.get("signal") == "SIGUSR2" and dist.rank == 0:
            if callable(requeue):
                print(f"[ssl-video] checkpoint at step {summary['step']} written: requeueing", flush=True)
                requeue(signal.SIGUSR2, None)  # exits the process once the job is requeued
        return summary


class CommandTask(submitit.helpers.Checkpointable):
    """Run ``ssl-video ARGV`` inside the job (with ``--shard I/N`` added for the tasks of an array).

    ``entry`` is the command line's entry point, ``entry(argv) -> exit code``, handed over by whoever submits
    (the CLI hands its ``main``): a module-level function pickles as a reference by name, so the job imports
    it where it runs and this package never imports the command line."""

    def __init__(self, entry: Callable[[list[str]], int], argv: list[str], cwd: str):
        self.entry, self.argv, self.cwd = entry, list(argv), cwd

    def __call__(self, shard: str | None = None) -> int:
        prepare_process()
        os.chdir(self.cwd)
        argv = [*self.argv, "--shard", shard] if shard is not None else self.argv
        print(f"[ssl-video] running: ssl-video {' '.join(argv)}", flush=True)
        code = self.entry(argv)
        sys.stdout.flush()
        if code != 0:
            raise RuntimeError(f"`ssl-video {' '.join(argv)}` exited with code {code}")
        return code
