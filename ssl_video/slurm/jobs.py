"""The record of the jobs submitted for a directory: ``DIR/slurm/jobs.json``.

Every submission appends one entry (``job_id``, ``kind``, ``submitted``, ``command``, ``profile``, ``nodes``,
``tasks_per_node``, ``cwd``; ``array``: the number of array tasks, or None; ``world_size`` for training).
``ssl-video jobs`` reads it back; the array size is what tells a job's state which tasks must be accounted
for before the job is finished.
"""

from __future__ import annotations

import json
from pathlib import Path

from ssl_video.errors import UserError
from ssl_video.files import write_json

__all__ = ["SLURM_SUBDIR", "JOBS_FILE", "jobs_path", "read_jobs", "record_job", "array_sizes", "find_job_dirs"]

SLURM_SUBDIR = "slurm"
JOBS_FILE = "jobs.json"


def jobs_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / SLURM_SUBDIR / JOBS_FILE


def read_jobs(job_dir: str | Path) -> list[dict]:
    """The jobs submitted for ``job_dir`` (oldest first); [] when none were."""
    path = jobs_path(job_dir)
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()).get("jobs", []))
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{path} is not a valid jobs file") from None


def record_job(job_dir: str | Path, entry: dict) -> None:
    """Append ``entry`` to the jobs of ``job_dir`` (the file is replaced in one step)."""
    write_json(jobs_path(job_dir), {"jobs": [*read_jobs(job_dir), entry]})


def array_sizes(jobs: list[dict]) -> dict[str, int]:
    """Job id -> number of array tasks, for the array jobs among ``jobs``."""
    return {str(job["job_id"]): int(job["array"]) for job in jobs if job.get("array")}


def find_job_dirs(root: str | Path = "runs") -> list[Path]:
    """Directories under ``root`` (two levels deep at most) that have submitted jobs, oldest first."""
    root = Path(root)
    relative = jobs_path(".")
    found = {p.parent.parent for pattern in (f"*/{relative}", f"*/*/{relative}") for p in root.glob(pattern)}
    if jobs_path(root).is_file():
        found.add(root)
    return sorted(found, key=lambda p: jobs_path(p).stat().st_mtime)
