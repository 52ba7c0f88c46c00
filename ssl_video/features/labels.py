"""The labels CSV that goes with feature files (``ssl-video eval pooling --labels``).

Rows ``video,label[,label...]``. A first row whose first cell is ``video`` is a header; with a header, a
column named ``split`` (values ``train``/``test``) assigns the split, and every other column after
``video`` holds labels. Empty cells are ignored; labels are strings.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ssl_video.errors import UserError

__all__ = ["LabelTable", "read_labels_csv"]


@dataclass
class LabelTable:
    """``videos[i]`` has labels ``labels[i]`` (strings) and, when the CSV says so, ``splits[i]``."""

    videos: list[str]
    labels: list[list[str]]
    splits: list[str] | None = None

    @property
    def classes(self) -> list[str]:
        return sorted({label for labels in self.labels for label in labels})


def read_labels_csv(path: str | Path) -> LabelTable:
    """Read ``video,label[,label...]`` (optional header, optional ``split`` column); see the module notes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels CSV not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path} is not a readable CSV: {exc}") from None
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(row)]
    if not numbered:
        raise UserError(f"labels CSV {path} is empty")
    split_col = None
    if numbered[0][1][0].lower() == "video":
        header = [cell.lower() for cell in numbered[0][1]]
        numbered = numbered[1:]
        if "split" in header:
            split_col = header.index("split")
    videos: list[str] = []
    labels: list[list[str]] = []
    splits: list[str] = []
    seen: set[str] = set()
    for line, row in numbered:
        video = row[0]
        if not video:
            raise UserError(f"{path} line {line}: the first column (video) is empty")
        if video in seen:
            raise UserError(f"{path} line {line}: video '{video}' is listed twice")
        seen.add(video)
        row_labels = [cell for j, cell in enumerate(row[1:], start=1) if cell and j != split_col]
        if not row_labels:
            raise UserError(f"{path} line {line}: video '{video}' has no label")
        if split_col is not None:
            split = row[split_col].lower() if split_col < len(row) else ""
            if split not in ("train", "test"):
                raise UserError(f"{path} line {line}: split must be 'train' or 'test', got '{split}'")
            splits.append(split)
        videos.append(video)
        labels.append(row_labels)
    if not videos:
        raise UserError(f"labels CSV {path} has a header but no rows")
    return LabelTable(videos, labels, splits if split_col is not None else None)
