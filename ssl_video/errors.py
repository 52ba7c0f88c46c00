"""Errors a user can fix, and every exit code the command line returns (decided here, in one place).

``0`` done; ``1`` an unexpected error (a bug: traceback); ``2`` a :class:`UserError` (bad recipe, arguments,
input, or an incompatible resume: one line, no traceback); ``3`` a run stopped by SIGTERM/SIGUSR2 after
writing a checkpoint (rerun the same command to resume); ``4`` :class:`NonFiniteLoss` (the loss or the
gradients became NaN/inf: nothing written, the last checkpoint is the last good one); ``130`` interrupted.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (config, path, arguments): one line, no traceback."""


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or names a missing path."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.detail = message
        super().__init__(f"config key '{key}': {message}")

    def under(self, prefix: str) -> ConfigError:
        """The same error for a section loaded under ``prefix`` (``crops.x`` -> ``stica.crops.x``)."""
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.detail)


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (full disk, I/O error); the previous one is intact.

    Raised on every process of a job at the same step (the failure is all-reduced)."""

    every_process = True


class NonFiniteLoss(RuntimeError):
    """Training produced a non-finite loss or gradient; the message is one line.

    Raised on every process of a job at the same step (the flags are all-reduced)."""

    every_process = True


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_NONFINITE = 4
EXIT_INTERRUPTED = 130


def exit_code_for_status(status: str) -> int:
    """The exit code of a training or evaluation run that ended with ``status`` (``summary["status"]``)."""
    return EXIT_STOPPED if status == "stopped" else EXIT_OK

def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
