"""The record of files that could not be read during a job: each named once, with its reason.

Data loaders carry bad files in a batch as ``"path<TAB>reason"`` strings under ``skipped`` (see
:func:`~ssl_video.data.clip_dataset.collate_clips`); whichever worker met a file, :meth:`BadFiles.update`
records it here, and the optional ``log`` callback hears about each file once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["BadFiles"]


class BadFiles:
    """Unreadable files met so far (``name -> reason``, first reason kept), reported once each."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self._files: dict[str, str] = {}
        self._log = log

    def add(self, path: str, reason: str) -> bool:
        """Record ``path``; ``True`` when it is new (and then reported through ``log``)."""
        if path in self._files:
            return False
        self._files[path] = reason
        if self._log is not None:
            self._log(f"skipping unreadable video ({len(self._files)} so far): {path}: {reason}")
        return True

    def update(self, skipped: Iterable[str]) -> None:
        """Record the ``"path<TAB>reason"`` entries of a batch's ``skipped`` list."""
        for entry in skipped:
            path, _, reason = entry.partition("\t")
            self.add(path, reason)

    @property
    def count(self) -> int:
        return len(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path: str) -> bool:
        return path in self._files

    def as_dict(self) -> dict[str, str]:
        """``{path: reason}`` in the order the files were met (a copy)."""
        return dict(self._files)
