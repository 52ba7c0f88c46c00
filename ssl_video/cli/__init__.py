"""The ``ssl-video`` command line.

Every module in this package that defines ``register(subparsers)`` contributes its commands; handlers
are thin (parse -> config -> one library call) and import heavy libraries only when they run.
A :class:`~ssl_video.errors.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ssl_video import __version__
from ssl_video.errors import EXIT_INTERRUPTED, EXIT_NONFINITE, EXIT_USAGE, NonFiniteLoss, UserError

EPILOG = """examples:
  ssl-video demo --out demo_out                      synthesise data, then run the pipeline on it
  ssl-video data synth data/synth --classes 8        write a synthetic UCF101-layout dataset
  ssl-video data check --dataset ucf101 --root data/synth --json
  ssl-video config show recipes/stica_tiny_synthetic.yaml data.clip.frames=8
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    """argparse with its errors (a missing argument, an unknown option, an invalid choice) as one line on stderr
    and exit code 2, like every other refusal: the line names the command and its ``--help`` instead of
    printing the usage block. Sub-commands inherit it (``add_subparsers`` makes parsers of this class)."""

    def error(self, message: str):
        command = self.prog.removeprefix("ssl-video").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"ssl-video: error: {where}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ssl-video",
        description="Pretrain video/audio encoders (STiCA, TSP), evaluate and export them.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ssl-video {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command they were given to
        (getattr(args, "_command_parser", None) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    func = getattr(args, "func", None)
    if func is None:
        # a group without its subcommand: show that group's help
        (getattr(args, "_parser", None) or parser).print_help()
        return 2
    try:
        func = _slurm_handler(args, argv) or func
        code = func(args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows here, inside the handler below
    except BrokenPipeError:
        # stdout was closed by its reader: not an error of the command; silence the interpreter's own flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UserError as exc:
        print(f"ssl-video: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLoss as exc:
        if int(os.environ.get("RANK", "0")) == 0:  # every process stops; one says why
            print(f"ssl-video: error: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    except KeyboardInterrupt:
        print("ssl-video: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)


def add_group(subparsers, name: str, help: str, epilog: str = "",
              slurm: bool | str = False) -> argparse._SubParsersAction:
    """Add a command group (``ssl-video NAME SUBCOMMAND``); returns its sub-parsers.

    ``slurm=True`` gives every command of the group ``--slurm PROFILE`` (see :func:`add_slurm_option`);
    ``slurm="array"`` also ``--array N``."""
    group = subparsers.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=HelpFormatter)
    group.set_defaults(_parser=group, func=None)
    commands = group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
    commands.slurm = slurm
    return commands


def add_command(subparsers, name: str, help: str, func, epilog: str = "",
                slurm: bool | str | None = None) -> argparse.ArgumentParser:
    """Add one command whose handler is ``func(args) -> exit code``; ``epilog`` shows an example.

    ``slurm`` (default: what the group says): see :func:`add_slurm_option`."""
    cmd = subparsers.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=HelpFormatter)
    cmd.set_defaults(func=func, _command_parser=cmd)
    slurm = getattr(subparsers, "slurm", False) if slurm is None else slurm
    if slurm:
        add_slurm_option(cmd, array=slurm == "array")
    return cmd


def add_slurm_option(cmd: argparse.ArgumentParser, array: bool = False, submit=None,
                     job_dir: bool = True) -> argparse.ArgumentParser:
    """Let ``cmd`` run as a Slurm job: with ``--slurm PROFILE`` the command is not run here; a job runs the
    same command line (without the submission options) instead. ``array=True`` adds ``--array N``: task
    ``i`` of the array runs the command with ``--shard i/N`` (the command must accept ``--shard``).
    ``submit(args, argv) -> exit code`` replaces the generic submission (``pretrain`` submits a training
    job); see :mod:`ssl_video.slurm.submit`."""
    group = cmd.add_argument_group("Slurm (run this command as a job; profiles: slurm/*.yaml)")
    group.add_argument("--slurm", metavar="PROFILE", help="submit it to Slurm with this cluster profile")
    if job_dir:
        group.add_argument("--job-dir", metavar="DIR",
                           help="where the job's logs and record go (default runs/jobs/<command>-<time>)")
    group.add_argument("--dry-run", action="store_true", help="with --slurm: print the sbatch script, submit nothing")
    if array:
        group.add_argument("--array", type=int, metavar="N", help="with --slurm: N array tasks, task i runs --shard i/N")
    cmd.set_defaults(_slurm_submit=submit)
    return cmd


def _slurm_handler(args, argv: list[str]):
    """The submission handler when ``--slurm`` is given (never inside a job), else None."""
    import os

    from ssl_video.slurm import IN_JOB_ENV

    if os.environ.get(IN_JOB_ENV):
        return None  # the job itself: run the command
    if getattr(args, "slurm", None) is None:
        for flag in ("dry_run", "array", "nodes"):
            if getattr(args, flag, None) not in (None, False):
                raise UserError(f"--{flag.replace('_', '-')} goes with --slurm PROFILE")
        return None
    submit = getattr(args, "_slurm_submit", None)
    check = getattr(args, "_slurm_check", None)
    if check is not None and not getattr(args, "dry_run", False):
        check(args)  # the inputs are there before the job waits in the queue
    if submit is None:
        from ssl_video.slurm.submit import submit_command

        return lambda parsed: submit_command(parsed, argv, entry=main)  # the job runs main(argv) itself
    return lambda parsed: submit(parsed, argv)


