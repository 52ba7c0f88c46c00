"""What ``ssl-video jobs`` shows: job states from Slurm accounting, plus what the job directory holds.

States come from ``sacct --duplicates`` (every start of a requeued job is one record, so the requeue count
is the number of records minus one); jobs accounting does not know yet (just submitted) or at all (a
cluster without accounting) are looked up with ``squeue``, and are ``UNKNOWN`` once they have left it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ssl_video.errors import UserError
from ssl_video.slurm.submit import JOBS_FILE, SLURM_SUBDIR, read_jobs

__all__ = ["ACTIVE_STATES", "JobState", "job_states", "find_job_dirs", "describe", "cancel", "log_files",
           "tail_lines", "error_lines"]

ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING",
                 "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
BAD_STATES = ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "CANCELLED",
              "PREEMPTED")


@dataclass
class JobState:
    job_id: str
    state: str = "UNKNOWN"
    requeues: int = 0
    exit_code: str = ""
    elapsed: str = ""
    tasks: dict[str, str] = field(default_factory=dict)  # array task id -> state


def _run(command: list[str]) -> str | None:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _overall(states: list[str]) -> str:
    for state in states:
        if state in ACTIVE_STATES:
            return state
    for bad in BAD_STATES:
        if bad in states:
            return bad
    return states[-1] if states else "UNKNOWN"


def job_states(job_ids: list[str]) -> dict[str, JobState]:
    """State of each job id (array jobs: of all their tasks) from sacct, then squeue."""
    ids = [str(j) for j in job_ids]
    result = {j: JobState(j) for j in ids}
    if not ids:
        return result
    records: dict[str, list[list[str]]] = {}
    out = _run(["sacct", "-j", ",".join(ids), "--duplicates", "--allocations", "--parsable2", "--noheader",
                "--format=JobID,State,ExitCode,Elapsed"])
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            parts[1] = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"  # "CANCELLED by 0"
            records.setdefault(parts[0], []).append(parts)
    missing = []
    for job_id in ids:
        tasks = {k: v for k, v in records.items() if k == job_id or k.startswith(f"{job_id}_")}
        if not tasks:
            missing.append(job_id)
            continue
        state = result[job_id]
        last = {task: rows[-1] for task, rows in tasks.items()}
        state.state = _overall([row[1] for row in last.values()])
        state.requeues = max(len(rows) - 1 for rows in tasks.values())
        first = last.get(job_id) or next(iter(last.values()))
        state.exit_code, state.elapsed = first[2], first[3]
        if len(tasks) > 1 or job_id not in tasks:
            state.tasks = {task.split("_", 1)[1]: row[1] for task, row in sorted(last.items())}
    # the queue too: jobs accounting has not recorded yet, and array tasks not dispatched yet (an array job whose
    # recorded tasks all finished is not finished while another task still waits in the queue)
    queue = _run(["squeue", "--noheader", "--jobs", ",".join(ids), "--format=%i|%T|%M"])
    seen: dict[str, list[str]] = {}
    for line in (queue or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            seen.setdefault(parts[0].split("_")[0], []).append(parts[1])
    for job_id, queued in seen.items():
        if job_id in result:
            recorded = [] if job_id in missing else [result[job_id].state]
            result[job_id].state = _overall(queued + recorded)
    return result


def find_job_dirs(root: str | Path = "runs") -> list[Path]:
    """Directories under ``root`` (two levels deep at most) that have submitted jobs, oldest first."""
    root = Path(root)
    found = {p.parent.parent for pattern in (f"*/{SLURM_SUBDIR}/{JOBS_FILE}", f"*/*/{SLURM_SUBDIR}/{JOBS_FILE}")
             for p in root.glob(pattern)}
    if (root / SLURM_SUBDIR / JOBS_FILE).is_file():
        found.add(root)
    return sorted(found, key=lambda p: (p / SLURM_SUBDIR / JOBS_FILE).stat().st_mtime)


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
        raise UserError(f"{job_dir} has no submitted jobs ({job_dir / SLURM_SUBDIR / JOBS_FILE} not found)")
    states = job_states([job["job_id"] for job in jobs])
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
    jobs = read_jobs(job_dir)
    if not jobs:
        raise UserError(f"{job_dir} has no submitted jobs")
    states = job_states([job["job_id"] for job in jobs])
    active = [j for j, st in states.items() if st.state in ACTIVE_STATES]
    if active:
        out = subprocess.run(["scancel", *active], capture_output=True, text=True)
        if out.returncode != 0:
            raise UserError(f"scancel failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
    return active
