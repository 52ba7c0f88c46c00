"""Writing files so that a reader sees the old content or the new one, never a partial file.

Every writer in the package goes through :func:`write_atomic`: the content is written to a temporary
name in the same directory (so the rename cannot cross file systems), optionally fsynced, then renamed
over the target. A failure at any point removes the temporary file and leaves the previous target as
it was. New files get the permissions the umask gives (``0644`` under the usual ``022``), not the
``0600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["temporary_name", "write_atomic", "write_text", "write_json", "fsync_dir", "open_log", "file_mode",
           "check_output_dir"]


def temporary_name(path: str | Path, suffix: str | None = None) -> Path:
    """A hidden name beside ``path`` unique to this process: ``.<name>.tmp<pid><suffix>``.

    ``suffix`` (default: ``path``'s own suffix) matters to writers that append one when it is missing,
    such as ``numpy.save`` (``.npy``) and ``numpy.savez`` (``.npz``).
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")


def fsync_dir(directory: str | Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_mode() -> int:
    """The permissions a new regular file gets under the current umask (``0o644`` under ``022``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, write: Callable[[Path], Any], *, fsync: bool = False,
                 suffix: str | None = None) -> Path:
    """Call ``write(tmp)`` to produce the new content at a temporary path, then rename it over ``path``.

    Parent directories are created. With ``fsync`` the file and the directory entry are flushed to disk
    (checkpoints). If ``write`` raises, nothing changes at ``path`` and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # writers that create private files (mkstemp: 0600) get the umask's mode
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if fsync:
        fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` by ``text`` in one step."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    """Replace ``path`` by ``data`` as indented JSON (non-JSON values written with ``str``)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def open_log(path: str | Path):
    """An append-only text log (``train.log``): lines are added, nothing is replaced; parents are created,
    permissions follow the umask. The caller closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open by the caller)


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Refuse (one-line :class:`~ssl_video.errors.UserError`) a directory target that is, or lies below, an
    existing file: checked before anything is written."""
    from ssl_video.errors import UserError

    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is" if candidate == path else f"lies below {candidate}, which is"
                raise UserError(f"{what} {path} {where} a file, not a directory")
            break
    return path
