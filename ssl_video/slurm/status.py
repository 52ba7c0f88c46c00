"""What ``ssl-video jobs`` shows: each job's state (:mod:`ssl_video.slurm.state`), plus what the job
directory holds (the run's last step and checkpoint, the end of the logs, the last traceback), and cancelling.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from ssl_video.errors import UserError
from ssl_video.slurm.jobs import SLURM_SUBDIR, jobs_path, read_jobs
from ssl_video.slurm.state import ACTIVE_STATES, BAD_STATES, active_jobs, states_of

__all__ = ["describe", "cancel", "log_files", "tail_lines", "error_lines"]


def log_files(job_dir: Path, job_id: str, kind: str) -> list[Path]:
    """``<job>_<task>_log.<kind>`` (array jobs: ``<job>_<index>_<task>_log.<kind>``), task 0 first."""
    folder = Path(job_dir) / SLURM_SUBDIR
    return sorted(folder.glob(f"{job_id}_*_log.{kind}"), key=lambda p: [int(x) if x.isdigit() else 0
                                                                      for x in p.name.split("_")[1:-1]])


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` non-empty lines (progress-bar redraws count as lines)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64_000))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    lines = [line.rstrip() for line in text.replace("\r", "\n").split("\n")]
    return [line for line in lines if line.strip()][-count:]


def error_lines(job_dir: Path, job_id: str, count: int = 12) -> tuple[Path | None, list[str]]:
    """The end of the last traceback in the first task log that has one (with the one-line ``error:``
    message printed just before it, if any); else the last ``error:`` line onwards."""
    for path in log_files(job_dir, job_id, "err"):
        lines = [line for line in tail_lines(path, 400) if not line.startswith(("srun:", "slurmstepd"))]
        messages = [i for i, line in enumerate(lines) if "error:" in line]
        starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
        if starts:
            before = [lines[i] for i in messages if starts[-1] - 3 <= i < starts[-1]]
            return path, before[-1:] + lines[starts[-1]:][-(count - len(before[-1:])):]
        if messages:
            return path, lines[messages[-1]:][:count]
    return None, []


def _checkpoint_line(job_dir: Path) -> list[str]:
    from ssl_video.engine.run_dir import RunDir

    run = RunDir(Path(job_dir))
    out = []
    step = None
    if run.metrics.is_file():
        rows = tail_lines(run.metrics, 1)
        try:
            step = json.loads(rows[0])["step"] if rows else None
        except (ValueError, KeyError):
            step = None
    summary = {}
    if run.summary.is_file():
        try:
            summary = json.loads(run.summary.read_text())
        except (OSError, ValueError):
            summary = {}
    total = f"/{summary['total_steps']}" if summary.get("total_steps") else ""
    status = f" ({summary['status']} at step {summary['step']}{total})" if summary.get("status") else ""
    out.append(f"last logged step: {step if step is not None else '-'}{status}")
    if run.last.is_file():
        import torch

        try:
            saved = torch.load(run.last, map_location="cpu", weights_only=True, mmap=True)
            at = f"step {saved.get('step')}/{saved.get('total_steps')}"
        except Exception:  # noqa: BLE001 (a checkpoint being replaced: show what is known)
            at = "unreadable"
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.last.stat().st_mtime))
        out.append(f"last checkpoint: {run.last} ({at}, written {written})")
    else:
        out.append("last checkpoint: none yet")
    return out


def describe(job_dir: str | Path, tail: int = 5) -> str:
    """The ``ssl-video jobs DIR`` report for one job directory."""
    job_dir = Path(job_dir)
    jobs = read_jobs(job_dir)
    if not jobs:
        raise UserError(f"{job_dir} has no submitted jobs ({jobs_path(job_dir)} not found)")
    states = states_of(jobs)
    lines = [f"{job_dir}"]
    for job in jobs:
        st = states[job["job_id"]]
        extra = f", exit {st.exit_code}" if st.exit_code and st.state not in ACTIVE_STATES else ""
        elapsed = f", elapsed {st.elapsed}" if st.elapsed else ""
        lines.append(f"  job {job['job_id']} [{job.get('kind', '?')}]: {st.state}, requeued {st.requeues} "
                     f"time(s){elapsed}{extra}; submitted {job.get('submitted', '?')}")
        if st.tasks:
            lines.append("    array tasks: " + ", ".join(f"{k} {v}" for k, v in st.tasks.items()))
    if jobs[-1].get("kind") == "pretrain":
        lines += [f"  {line}" for line in _checkpoint_line(job_dir)]
    last = jobs[-1]["job_id"]
    outs = log_files(job_dir, last, "out")
    if outs:
        lines.append(f"  log {outs[0]} (last lines):")
        lines += [f"    {line}" for line in tail_lines(outs[0], tail)]
    if states[last].state in BAD_STATES or states[last].state == "UNKNOWN":
        path, error = error_lines(job_dir, last)
        if error:
            lines.append(f"  error ({path}):")
            lines += [f"    {line}" for line in error]
    return "\n".join(lines)


def cancel(job_dir: str | Path) -> list[str]:
    """scancel every job of ``job_dir`` that is not finished; returns their ids."""
    if not read_jobs(job_dir):
        raise UserError(f"{job_dir} has no submitted jobs")
    active = list(active_jobs(job_dir))
    if active:
        out = subprocess.run(["scancel", *active], capture_output=True, text=True)
        if out.returncode != 0:
            raise UserError(f"scancel failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
    return active
