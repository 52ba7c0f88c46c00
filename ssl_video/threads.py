"""CPU threads of this process: how many compute threads, and how idle ones wait.

PyTorch's CPU kernels run on an OpenMP pool whose idle threads spin at every barrier by default. On
cores shared with other busy processes a spinning thread burns the time slice another thread needs,
and a tiny training step went from 1.2 s to 6-18 s beside one or two busy processes
(docs/PERFORMANCE.md). Two settings avoid that:

* the thread count comes from the CPUs this process may actually use: its affinity mask
  (``os.sched_getaffinity``) capped by a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``), less the
  CPUs taken by data-loader worker processes (a worker counts as ``worker_share`` of a CPU, rounded
  down over all workers: on 2 CPUs one worker leaves 2 compute threads, two workers leave 1);
* idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).

The wait policy is read once, when the OpenMP runtime starts (at ``import torch``): call
:func:`configure_environment` before anything imports torch (the command-line handlers do), then
:func:`apply` sets torch's pool size. Values the user already exported (``OMP_NUM_THREADS``,
``OMP_WAIT_POLICY``, ``MKL_NUM_THREADS``) are kept. This module imports nothing heavy: it is the
lowest layer.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThreadPlan", "available_cpus", "cgroup_cpu_limit", "plan_threads", "configure_environment", "apply",
           "configure"]

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
WAIT_POLICY = "PASSIVE"
# A loader worker mostly waits for its queue to drain; it decodes a batch in a fraction of a step
# (tiny recipes: about a quarter). Half a CPU per worker, rounded down over the workers.
WORKER_SHARE = 0.5


@dataclass(frozen=True)
class ThreadPlan:
    cpus: int  # CPUs this process may use (affinity and quota)
    workers: int  # data-loader worker processes beside it
    threads: int  # torch compute threads of the main process
    wait_policy: str  # OMP_WAIT_POLICY


def cgroup_cpu_limit(path: str | Path = CPU_MAX) -> float | None:
    """The cgroup v2 CPU quota in CPUs (``quota / period``), or None when unlimited or unreadable."""
    try:
        quota, _, period = Path(path).read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max":
        return None
    try:
        value = int(quota) / int(period or 100000)
    except ValueError:
        return None
    return value if value > 0 else None


def available_cpus(cpu_max: str | Path = CPU_MAX) -> int:
    """CPUs this process may run on: the affinity mask, capped by the cgroup quota (rounded up, at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cpu_max)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota - 1e-9))
    return max(1, cpus)


def plan_threads(workers: int = 0, cpus: int | None = None, processes: int = 1,
                 worker_share: float = WORKER_SHARE) -> ThreadPlan:
    """Compute threads for one of ``processes`` training processes with ``workers`` loader workers each."""
    cpus = available_cpus() if cpus is None else max(1, int(cpus))
    per_process = cpus // max(1, processes)
    threads = max(1, per_process - math.floor(worker_share * max(0, workers) + 1e-9))
    return ThreadPlan(cpus=cpus, workers=max(0, workers), threads=threads, wait_policy=WAIT_POLICY)


def configure_environment(plan: ThreadPlan, environ=None) -> dict[str, str]:
    """Export the plan for the OpenMP/MKL runtimes (user-set values win); returns what is now in effect.

    Effective only before the runtimes start (before ``import torch``); later it still tells child
    processes.
    """
    env = os.environ if environ is None else environ
    values = {"OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads),
              "OMP_WAIT_POLICY": plan.wait_policy}
    for key, value in values.items():
        if key not in env or _SET_HERE.get(key) == env[key]:  # ours (from an earlier plan) may be replaced
            env[key] = value
            _SET_HERE[key] = value
    return {key: env[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}


_SET_HERE: dict[str, str] = {}  # the values this module exported (the others are the user's)


def torch_started() -> bool:
    """Whether torch (and with it the OpenMP runtime) is already loaded in this process."""
    return "torch" in sys.modules


def apply(plan: ThreadPlan) -> int:
    """Size torch's compute pool: ``OMP_NUM_THREADS`` when the user set it, else the plan. Returns it."""
    import torch

    value = os.environ.get("OMP_NUM_THREADS", "")
    user_set = value and _SET_HERE.get("OMP_NUM_THREADS") != value
    threads = int(value) if user_set and value.isdigit() and int(value) > 0 else plan.threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def configure(workers: int = 0, processes: int = 1) -> ThreadPlan:
    """Both steps at once: the environment (when torch is not loaded yet) and, if it is, the pool size."""
    plan = plan_threads(workers, processes=processes)
    configure_environment(plan)
    if torch_started():
        apply(plan)
    return plan
