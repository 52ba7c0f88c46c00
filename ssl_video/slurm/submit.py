"""Submit a job: a profile and a task become an sbatch script (through submitit); the job is recorded.

Every job has a directory: the run directory for ``pretrain``, ``runs/jobs/<command>-<time>`` (or
``--job-dir``) for other commands. Slurm logs and submitit's files go to ``DIR/slurm/`` (logs
``<job id>_<task>_log.out|err``, appended to across requeues) and every submission is appended to
``DIR/slurm/jobs.json``, which ``ssl-video jobs`` reads.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ssl_video.errors import UserError
from ssl_video.slurm.jobs import SLURM_SUBDIR, record_job
from ssl_video.slurm.profile import SlurmProfile, load_profile

__all__ = ["sbatch_parameters", "sbatch_script", "strip_options", "submit_training", "submit_command"]

# the options that only say how to submit: removed from the command line a job runs
SUBMIT_OPTIONS = {"--slurm": True, "--job-dir": True, "--dry-run": False, "--array": True, "--nodes": True}


def sbatch_parameters(profile: SlurmProfile, name: str, nodes: int, tasks_per_node: int,
                      gpus_per_node: int) -> dict:
    """submitit ``SlurmExecutor`` parameters (sbatch options) for one job."""
    params = {
        "job_name": profile.job_name or name,
        "nodes": nodes,
        "ntasks_per_node": tasks_per_node,
        "cpus_per_task": profile.cpus_per_task,
        "time": profile.time_min,
        "signal_delay_s": profile.signal_delay_s,
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(profile, key):
            params[key] = getattr(profile, key)
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if profile.mem_gb is not None:
        gib = profile.mem_gb
        params["mem"] = f"{int(gib)}G" if float(gib).is_integer() else f"{int(round(gib * 1024))}M"
    if profile.setup:
        params["setup"] = list(profile.setup)
    if profile.extra_sbatch:
        params["additional_parameters"] = dict(profile.extra_sbatch)
    return params


def _python(profile: SlurmProfile) -> str:
    return profile.python or shlex.quote(sys.executable)


def sbatch_script(folder: Path, params: dict, profile: SlurmProfile) -> str:
    """The script submitit would hand to sbatch (for ``--dry-run``; needs no Slurm)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([_python(profile), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, **params).rstrip("\n") + "\n"


def _executor(folder: Path, params: dict, profile: SlurmProfile):
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UserError("sbatch/srun not found: submit from a Slurm login node (or see the script with --dry-run)")
    from submitit import SlurmExecutor

    executor = SlurmExecutor(folder=folder, max_num_timeout=profile.max_num_timeout, python=profile.python)
    executor.update_parameters(**params)
    return executor


def _submit(submit, *args):
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        return submit(*args)
    except (FailedJobError, FailedSubmissionError, OSError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        raise UserError(f"sbatch refused the job: {detail}") from None


def strip_options(argv: list[str], options: dict[str, bool] | None = None) -> list[str]:
    """``argv`` without the submission options (``--slurm X``, ``--slurm=X``, ``--dry-run``, ...)."""
    options = SUBMIT_OPTIONS if options is None else options
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in options:
            skip = options[name] and "=" not in token
            continue
        out.append(token)
    return out


def _refuse_if_active(job_dir: Path) -> None:
    from ssl_video.slurm.state import active_jobs

    active = active_jobs(job_dir)
    if active:
        listed = ", ".join(f"{job_id} ({state})" for job_id, state in active.items())
        raise UserError(f"{job_dir} already has a job that is not finished: {listed}; wait for it or "
                        f"cancel it with `ssl-video jobs cancel {job_dir}`")


def _announce(job_id: str, job_dir: Path, what: str, logs: list[Path], label: str = "job") -> None:
    print(f"submitted Slurm job {job_id}: {what}")
    print(f"  {label} directory: {job_dir}")
    print(f"  logs: {logs[0]} and {logs[1]} (task 0; other tasks next to them)")
    print(f"  follow it: ssl-video jobs {job_dir}    cancel it: ssl-video jobs cancel {job_dir}")


def _entry(job_id: str, kind: str, command: list[str], profile_path: str, params: dict, **extra) -> dict:
    return {"job_id": str(job_id), "kind": kind, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command, "profile": str(profile_path), "nodes": params["nodes"],
            "tasks_per_node": params["ntasks_per_node"], "cwd": os.getcwd(), **extra}


def submit_training(recipe, recipe_path: str, overrides: list[str], run_dir: Path, profile_path: str,
                    nodes: int | None, dry_run: bool, start: dict | None = None) -> int:
    """``ssl-video pretrain RECIPE --slurm PROFILE``: one training job, one task per GPU (or CPU slot).

    ``start``: ``train``'s ``resume``/``extend`` arguments (``--resume``, ``--fresh``, ``--extend``)."""
    start = dict(start or {})
    from ssl_video.config import read_yaml, to_dict
    from ssl_video.engine.checkpoint import check_resume
    from ssl_video.engine.run_dir import RunDir

    profile = load_profile(profile_path)
    nodes = profile.nodes if nodes is None else nodes
    if nodes < 1:
        raise UserError("--nodes must be at least 1")
    run_dir = run_dir.absolute()
    folder = run_dir / SLURM_SUBDIR
    tasks = profile.tasks()
    params = sbatch_parameters(profile, f"ssl-video-{recipe.name}", nodes, tasks, profile.gpus_per_node)
    if dry_run:
        print(sbatch_script(folder, params, profile), end="")
        return 0
    config = to_dict(recipe)
    run = RunDir(run_dir)
    if run.config.is_file():  # refuse an incompatible resume now, not after waiting in the queue
        from ssl_video.engine.checkpoint import EXTENDABLE_KEYS, RUNTIME_KEYS

        if start.get("resume") == "never":
            raise UserError(f"--fresh: {run_dir} already holds a run; give another --run-dir (or remove it)")
        runtime = RUNTIME_KEYS + (EXTENDABLE_KEYS if start.get("extend") else ())
        check_resume(read_yaml(run.config), config, run_dir, what="config.yaml", runtime=runtime)
    _refuse_if_active(run_dir)
    from ssl_video.slurm.tasks import TrainTask

    executor = _executor(folder, params, profile)
    if start.get("resume") not in (None, "auto", "never"):
        start["resume"] = str(Path(start["resume"]).absolute())
    task = TrainTask(config, str(run_dir), str(Path(recipe_path).absolute()), gpus=profile.gpus_per_node > 0,
                     start=start)
    job = _submit(executor.submit, task)
    command = ["pretrain", str(recipe_path), *overrides, "--run-dir", str(run_dir)]
    record_job(run_dir, _entry(job.job_id, "pretrain", command, profile_path, params, world_size=nodes * tasks))
    device = f"{profile.gpus_per_node} GPU(s)" if profile.gpus_per_node else f"{tasks} CPU task(s)"
    _announce(job.job_id, run_dir, f"pretrain {recipe.name} on {nodes} node(s) x {device}",
              [job.paths.stdout, job.paths.stderr], label="run")
    return 0


def _job_dir(args, words: list[str]) -> Path:
    if getattr(args, "job_dir", None):
        return Path(args.job_dir).absolute()
    from ssl_video.engine.run_dir import default_run_dir

    return default_run_dir("-".join(words), root=Path("runs") / "jobs").absolute()


def _command_words(argv: list[str]) -> list[str]:
    words = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return words[:2] if len(words) > 2 else words


def submit_command(args, argv: list[str], entry: Callable[[list[str]], int]) -> int:
    """The generic ``--slurm PROFILE`` handler: one job (or an ``--array``) running the same command line
    through ``entry(argv) -> exit code`` (the command line's ``main``; see :class:`~.tasks.CommandTask`)."""
    profile = load_profile(args.slurm)
    command = strip_options(argv)
    words = _command_words(command)
    array = getattr(args, "array", None)
    if array is not None and array < 1:
        raise UserError("--array must be at least 1")
    if array is not None and getattr(args, "shard", None):
        raise UserError("--array sets --shard for each task: give one or the other")
    job_dir = _job_dir(args, words)
    folder = job_dir / SLURM_SUBDIR
    params = sbatch_parameters(profile, "ssl-video-" + "-".join(words), 1, 1, min(profile.gpus_per_node, 1))
    if getattr(args, "dry_run", False):
        if array is not None:
            params["map_count"] = array  # what submitit's map_array sets: --array and %A_%a log names
        print(sbatch_script(folder, params, profile), end="")
        return 0
    from ssl_video.slurm.tasks import CommandTask

    executor = _executor(folder, params, profile)
    task = CommandTask(entry, command, os.getcwd())
    if array is None:
        job = _submit(executor.submit, task)
        job_id, what = job.job_id, "ssl-video " + " ".join(words)
    else:
        jobs = _submit(executor.map_array, task, [f"{i}/{array}" for i in range(array)])
        job = jobs[0]
        job_id, what = job.job_id.split("_")[0], f"ssl-video {' '.join(words)} as {array} array tasks"
    record_job(job_dir, _entry(job_id, " ".join(words), command, args.slurm, params, array=array))
    _announce(job_id, job_dir, what, [job.paths.stdout, job.paths.stderr])
    return 0
