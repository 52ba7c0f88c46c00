"""Progress of long work on stderr: a bar on a terminal, plain lines everywhere else.

In a file or a pipe (a Slurm log, ``| tee``) a progress bar is a stream of carriage-return redraws. There,
:func:`progress` prints one plain line now and then instead (``[ssl-video] extracting: 120/480 videos (25%,
1m30s)``), at most once per ``interval`` seconds and once at the end, so a long job still says how far it is.
``enabled=False`` prints nothing. tqdm is imported only when a bar is drawn.

    with progress(total=len(videos), desc="extracting", unit="video") as bar:
        for video in videos:
            ...
            bar.update()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["progress", "track", "PlainProgress", "on_terminal"]

PREFIX = "[ssl-video]"


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _plural(unit: str) -> str:
    if unit.endswith(("ch", "sh", "x")):
        return f"{unit}es"
    return unit if unit.endswith("s") else f"{unit}s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class PlainProgress:
    """tqdm's ``update`` / ``write`` / ``close`` as plain lines: one when ``interval`` seconds have passed since
    the last, and one at the end (when anything was counted)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0, interval: float = 30.0,
                 stream: TextIO | None = None, clock=time.monotonic):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval, self.stream, self.clock = interval, stream, clock
        self.started = self.last = clock()
        self.closed = False
        self.postfix = ""

    def _print(self, text: str) -> None:
        print(text, file=self.stream if self.stream is not None else sys.stderr, flush=True)

    def line(self) -> str:
        units = self.unit if self.n == 1 else _plural(self.unit)
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f"{100 * self.n / self.total:.0f}%, " if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{PREFIX} {self.desc}: {count} {units} ({share}{_duration(self.clock() - self.started)}{postfix})"

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval and (not self.total or self.n < self.total):
            self.last = now
            self._print(self.line())

    def write(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if not self.closed and self.n:
            self._print(self.line())
        self.closed = True

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent(PlainProgress):
    """Counts nothing aloud; messages given to ``write`` still reach the user."""

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True, initial: int = 0,
             interval: float = 30.0, leave: bool = False) -> Any:
    """A progress counter: tqdm's bar on a terminal, :class:`PlainProgress` elsewhere, silent when disabled."""
    if not enabled:
        return _Silent(total, desc, unit, initial)
    if on_terminal():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True)
    return PlainProgress(total, desc, unit, initial, interval)


def track(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it",
          enabled: bool = True, interval: float = 30.0) -> Iterator:
    """Iterate ``iterable`` while counting it with :func:`progress`."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    bar = progress(total, desc, unit, enabled, interval=interval)
    try:
        for item in iterable:
            yield item
            bar.update()
    finally:
        bar.close()
