"""The ``ssl-video`` command line.

Every module in this package that defines ``register(subparsers)`` contributes its commands; handlers
are thin (parse -> config -> one library call) and import heavy libraries only when they run.
A :class:`~ssl_video.errors.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ssl_video import __version__
from ssl_video.errors import UserError

EPILOG = """examples:
  ssl-video demo --out demo_out                      synthesise data, then run the pipeline on it
  ssl-video data synth data/synth --classes 8        write a synthetic UCF101-layout dataset
  ssl-video data check --dataset ucf101 --root data/synth --json
  ssl-video config show recipes/<recipe>.yaml data.frames=8
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # a group without its subcommand: show that group's help
        (getattr(args, "_parser", None) or parser).print_help()
        return 2
    try:
        code = func(args)
    except UserError as exc:
        print(f"ssl-video: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssl-video: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def add_group(subparsers, name: str, help: str, epilog: str = "") -> argparse._SubParsersAction:
    """Add a command group (``ssl-video NAME SUBCOMMAND``); returns its sub-parsers."""
    group = subparsers.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=HelpFormatter)
    group.set_defaults(_parser=group, func=None)
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def add_command(subparsers, name: str, help: str, func, epilog: str = "") -> argparse.ArgumentParser:
    """Add one command whose handler is ``func(args) -> exit code``; ``epilog`` shows an example."""
    cmd = subparsers.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=HelpFormatter)
    cmd.set_defaults(func=func)
    return cmd


