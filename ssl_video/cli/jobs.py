"""``ssl-video jobs``: the Slurm jobs of runs and evaluations, and cancelling them."""

from __future__ import annotations

from ssl_video.cli import add_command

EXAMPLE = """examples:
  ssl-video jobs                         every job directory under runs/ (runs and runs/jobs/*)
  ssl-video jobs runs/stica_k400         one run: state, requeues, last step and checkpoint, log tail
  ssl-video jobs cancel runs/stica_k400  scancel its unfinished jobs (training saves a checkpoint first)

States come from Slurm accounting (sacct); a failed job shows FAILED and the last lines of its error log."""


def register(subparsers) -> None:
    cmd = add_command(subparsers, "jobs", "show (or cancel) Slurm jobs submitted with --slurm", run_jobs, EXAMPLE)
    cmd.add_argument("target", nargs="*", metavar="[cancel] DIR",
                     help="a run or job directory (default: every one under --root); 'cancel DIR' cancels")
    cmd.add_argument("--root", default="runs", help="where to look without DIR (default runs)")
    cmd.add_argument("--tail", type=int, default=5, help="log lines to show per job (default 5)")


def run_jobs(args) -> int:
    from ssl_video.errors import UserError
    from ssl_video.slurm.jobs import find_job_dirs
    from ssl_video.slurm.status import cancel, describe

    target = list(args.target)
    if target and target[0] == "cancel":
        if len(target) != 2:
            raise UserError("usage: ssl-video jobs cancel DIR")
        cancelled = cancel(target[1])
        print(f"cancelled {', '.join(cancelled)}" if cancelled else f"{target[1]}: no unfinished job to cancel")
        return 0
    dirs = target or find_job_dirs(args.root)
    if not dirs:
        print(f"no submitted jobs under {args.root}/")
        return 0
    print("\n\n".join(describe(d, tail=args.tail) for d in dirs))
    return 0
