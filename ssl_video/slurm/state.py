"""The state of submitted jobs, merged from what three Slurm sources say about each of their tasks.

- ``squeue``: the controller's queue, live; a task is there only while it waits or runs (pending array tasks
  compressed: ``123_[2-5%2]``).
- ``scontrol show job``: the controller's records, live, which keep a finished job for a while (MinJobAge,
  5 minutes by default); one record per array task, the pending ones as one ``ArrayTaskId=2-5%2`` record.
- ``sacct --duplicates``: accounting, fed to slurmdbd asynchronously and kept for good; every start of a
  requeued job is one record (requeues = records - 1). It lags the controller: for a few seconds after an
  array's tasks have left the queue it may list one bare ``123`` record, or only some of the tasks.

The rule (:func:`merge_states`, a pure function of the parsed outputs): the tasks of a job are the array's
recorded size (``DIR/slurm/jobs.json``) plus every task any source names; each task's state comes from the
freshest source that knows it (``squeue``, then ``scontrol``, then ``sacct``) and is ``UNKNOWN`` when none
does; a job is finished only when every one of its tasks is, so a task nobody has seen yet keeps the job
``UNKNOWN`` rather than being dropped.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ssl_video.slurm.jobs import array_sizes, read_jobs

__all__ = ["ACTIVE_STATES", "BAD_STATES", "JobState", "Record", "parse_sacct", "parse_squeue", "parse_scontrol",
           "merge_states", "job_states", "states_of", "active_jobs"]

ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING",
                 "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
BAD_STATES = ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "CANCELLED",
              "PREEMPTED")
UNKNOWN = "UNKNOWN"

SACCT_FORMAT = "JobID,State,ExitCode,Elapsed"
SQUEUE_FORMAT = "%i|%T|%M"


@dataclass
class JobState:
    job_id: str
    state: str = UNKNOWN
    requeues: int = 0
    exit_code: str = ""
    elapsed: str = ""
    tasks: dict[str, str] = field(default_factory=dict)  # array task id -> state


@dataclass(frozen=True)
class Record:
    """What one source says about one task: ``task`` is the array index, None for a job that is not an array
    (or for an array's bare record, which does not say which task it is)."""

    job_id: str
    task: str | None
    state: str
    exit_code: str = ""
    elapsed: str = ""
    restarts: int = 0


# ------------------------------------------------------------------------------------------------ parsing

def _task_ids(spec: str) -> list[str]:
    """``"3"``, ``"[0-3,7]"``, ``"2-5%2"`` (a throttle), ``"0-8:4"`` (a step) -> the task indices."""
    spec = spec.strip("[]").split("%", 1)[0]
    out: list[str] = []
    for part in filter(None, spec.split(",")):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        if not (first.isdigit() and (last or first).isdigit() and (step or "1").isdigit()):
            continue
        out += [str(i) for i in range(int(first), int(last or first) + 1, max(int(step or 1), 1))]
    return out


def _records(job: str, tasks: str | None, state: str, **details) -> list[Record]:
    state = state.split()[0] if state.strip() else UNKNOWN  # "CANCELLED by 0"
    if tasks is None:
        return [Record(job, None, state, **details)]
    return [Record(job, task, state, **details) for task in _task_ids(tasks)]


def _split_id(text: str) -> tuple[str, str | None]:
    """``"123"`` -> (123, None); ``"123_4"`` / ``"123_[0-3%2]"`` -> (123, the task part)."""
    job, sep, tasks = text.strip().partition("_")
    return job, (tasks if sep else None)


def parse_sacct(text: str | None) -> list[Record]:
    """``sacct --parsable2 --noheader --format=JobID,State,ExitCode,Elapsed`` (records in their order)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            out += _records(*_split_id(parts[0]), parts[1], exit_code=parts[2], elapsed=parts[3])
    return out


def parse_squeue(text: str | None) -> list[Record]:
    """``squeue --noheader --format=%i|%T|%M``."""
    out = []
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out += _records(*_split_id(parts[0]), parts[1])
    return out


def parse_scontrol(text: str | None) -> list[Record]:
    """``scontrol --oneliner show job`` (or without ``--oneliner``: a record starts at each ``JobId=``)."""
    out = []
    for chunk in re.split(r"\bJobId=", text or "")[1:]:
        fields = dict(re.findall(r"(\w+)=(\S*)", "JobId=" + chunk))
        if "JobId" not in fields or "JobState" not in fields:
            continue
        array_job = fields.get("ArrayJobId")
        job, tasks = (array_job, fields.get("ArrayTaskId")) if array_job else (fields["JobId"], None)
        restarts = int(fields["Restarts"]) if fields.get("Restarts", "").isdigit() else 0
        out += _records(job, tasks, fields["JobState"], exit_code=fields.get("ExitCode", ""),
                        elapsed=fields.get("RunTime", ""), restarts=restarts)
    return out


# ------------------------------------------------------------------------------------------------ the rule

def _overall(states: list[str]) -> str:
    """An active task keeps the job active; a task not accounted for keeps it UNKNOWN; then the first bad
    state; then the (shared) final state."""
    for state in states:
        if state in ACTIVE_STATES:
            return state
    if not states or UNKNOWN in states:
        return UNKNOWN
    for bad in BAD_STATES:
        if bad in states:
            return bad
    return states[-1]


def _by_task(records: list[Record], job_id: str) -> dict[str | None, list[Record]]:
    out: dict[str | None, list[Record]] = {}
    for record in records:
        if record.job_id == job_id:
            out.setdefault(record.task, []).append(record)
    return out


def _task_order(task: str | None) -> tuple[int, str]:
    return (int(task), "") if task and task.isdigit() else (-1, task or "")


def merge_states(job_ids: list[str], sacct: list[Record], squeue: list[Record], scontrol: list[Record],
                 sizes: dict[str, int] | None = None) -> dict[str, JobState]:
    """The state of every job (array jobs: of each of their tasks) from the three sources' records.

    ``sizes``: job id -> number of array tasks, where the submission knows it."""
    sizes = sizes or {}
    result = {}
    for job_id in map(str, job_ids):
        sources = [_by_task(squeue, job_id), _by_task(scontrol, job_id), _by_task(sacct, job_id)]
        queued, controller, accounting = sources
        named = {task for source in sources for task in source if task is not None}
        if job_id in sizes or named:  # an array: its bare records do not say which task they are
            tasks: list[str | None] = sorted(named | {str(i) for i in range(sizes.get(job_id, 0))},
                                             key=_task_order)
        else:
            tasks = [None]
        job = JobState(job_id)
        states, details = [], []
        for task in tasks:
            live = queued.get(task) or controller.get(task) or accounting.get(task)
            states.append(live[-1].state if live else UNKNOWN)
            detail = (controller.get(task) or accounting.get(task) or [None])[-1]
            if detail is not None:
                details.append(detail)
            restarts = max([r.restarts for r in controller.get(task, [])], default=0)
            job.requeues = max(job.requeues, restarts, len(accounting.get(task, [])) - 1)
        job.state = _overall(states)
        if details:
            job.exit_code, job.elapsed = details[0].exit_code, details[0].elapsed
        if tasks != [None]:
            job.tasks = dict(zip(tasks, states))
        result[job_id] = job
    return result


# ------------------------------------------------------------------------------------------------ asking Slurm

def _run(command: list[str]) -> str | None:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def job_states(job_ids: list[str], sizes: dict[str, int] | None = None) -> dict[str, JobState]:
    """State of each job id (array jobs: of all their tasks; ``sizes``: their number where known).

    Accounting is asked first and the controller last, so that a task finishing meanwhile is seen by the
    later, fresher sources rather than by none."""
    ids = [str(j) for j in job_ids]
    if not ids:
        return {}
    sacct = _run(["sacct", "-j", ",".join(ids), "--duplicates", "--allocations", "--parsable2", "--noheader",
                  f"--format={SACCT_FORMAT}"])
    # one job per call: scontrol takes a single id, and fails for one it no longer knows
    scontrol = "\n".join(filter(None, (_run(["scontrol", "--oneliner", "show", "job", j]) for j in ids)))
    squeue = _run(["squeue", "--noheader", "--jobs", ",".join(ids), f"--format={SQUEUE_FORMAT}"])
    return merge_states(ids, parse_sacct(sacct), parse_squeue(squeue), parse_scontrol(scontrol), sizes)


def states_of(jobs: list[dict]) -> dict[str, JobState]:
    """:func:`job_states` of the jobs recorded in a ``jobs.json``, with their array sizes."""
    return job_states([job["job_id"] for job in jobs], array_sizes(jobs))


def active_jobs(job_dir: str | Path) -> dict[str, str]:
    """Job id -> state of the jobs of ``job_dir`` that are not finished."""
    states = states_of(read_jobs(job_dir))
    return {job_id: st.state for job_id, st in states.items() if st.state in ACTIVE_STATES}
