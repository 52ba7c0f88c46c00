"""The TSP annotation format: untrimmed videos with labelled temporal segments (REFERENCE §3).

* metadata CSV ``filename,video-duration,fps,video-frames``: one row per video;
* ground-truth CSV ``video-name,t-start,t-end,action-label,video-duration,filename,fps,video-frames,
  temporal-region-label``: one row per segment; ``temporal-region-label`` is ``Action`` (``action-label``
  names the class) or ``No action`` (a background gap, ``action-label`` empty).

A video is known by its *key*: its file name relative to the videos directory without the extension
(``v_abc.mp4`` -> ``v_abc``); clip features and global video features are stored under that key.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ssl_video.errors import UserError
from ssl_video.files import write_text

__all__ = [
    "METADATA_COLUMNS", "GROUND_TRUTH_COLUMNS", "ACTION", "BACKGROUND", "VideoMeta", "Segment", "video_key",
    "read_metadata_csv", "read_ground_truth_csv", "write_metadata_csv", "write_ground_truth_csv", "action_classes",
]


METADATA_COLUMNS = ("filename", "video-duration", "fps", "video-frames")
GROUND_TRUTH_COLUMNS = ("video-name", "t-start", "t-end", "action-label", "video-duration", "filename", "fps",
                        "video-frames", "temporal-region-label")
ACTION, BACKGROUND = "Action", "No action"


@dataclass(frozen=True)
class VideoMeta:
    filename: str
    duration: float
    fps: float
    frames: int


@dataclass(frozen=True)
class Segment:
    video: str  # video-name
    filename: str
    start: float
    end: float
    label: str  # action class; "" for background
    action: bool  # temporal-region-label == Action
    duration: float  # of the whole video
    fps: float
    frames: int


def video_key(filename: str) -> str:
    """The name a video's features are stored under: its relative path without the extension."""
    path = PurePosixPath(str(filename).replace(os.sep, "/"))
    return str(path.with_suffix("")) if path.suffix else str(path)


# ---------------------------------------------------------------------------------------------- CSVs


def _read_rows(path: str | Path, columns: tuple[str, ...], what: str) -> list[tuple[int, dict]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} CSV not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            if missing:
                raise UserError(f"{path}: not a TSP {what} CSV, missing column(s) {', '.join(missing)} "
                                f"(expected {','.join(columns)})")
            reader.fieldnames = header
            rows = [(i + 2, {k: (v or "").strip() for k, v in row.items() if k is not None})
                    for i, row in enumerate(reader) if any((v or "").strip() for v in row.values() if v)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path} is not a readable CSV: {exc}") from None
    if not rows:
        raise UserError(f"{what} CSV {path} has no rows")
    return rows


def _number(row: dict, column: str, path, line: int, kind=float):
    try:
        value = kind(float(row[column])) if kind is int else float(row[column])
    except ValueError:
        raise UserError(f"{path} line {line}: column {column} must be a number, got {row[column]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{path} line {line}: column {column} must be finite and >= 0, got {row[column]!r}")
    return value


def read_metadata_csv(path: str | Path) -> list[VideoMeta]:
    """Videos of a TSP metadata CSV, in file order; a file listed twice is an error."""
    videos, seen = [], set()
    for line, row in _read_rows(path, METADATA_COLUMNS, "metadata"):
        name = row["filename"]
        if not name:
            raise UserError(f"{path} line {line}: empty filename")
        if name in seen:
            raise UserError(f"{path} line {line}: {name} is listed twice")
        seen.add(name)
        videos.append(VideoMeta(name, _number(row, "video-duration", path, line), _number(row, "fps", path, line),
                                _number(row, "video-frames", path, line, int)))
    return videos


def read_ground_truth_csv(path: str | Path) -> list[Segment]:
    """Segments of a TSP ground-truth CSV, in file order."""
    segments = []
    for line, row in _read_rows(path, GROUND_TRUTH_COLUMNS, "ground-truth"):
        region = row["temporal-region-label"]
        if region not in (ACTION, BACKGROUND):
            raise UserError(f"{path} line {line}: temporal-region-label must be '{ACTION}' or '{BACKGROUND}', "
                            f"got {region!r}")
        label = row["action-label"] if region == ACTION else ""
        if region == ACTION and not label:
            raise UserError(f"{path} line {line}: an Action segment needs an action-label")
        if not row["filename"]:
            raise UserError(f"{path} line {line}: empty filename")
        start, end = _number(row, "t-start", path, line), _number(row, "t-end", path, line)
        if end < start:
            raise UserError(f"{path} line {line}: t-end {end} is before t-start {start}")
        segments.append(Segment(row["video-name"] or video_key(row["filename"]), row["filename"], start, end, label,
                                region == ACTION, _number(row, "video-duration", path, line),
                                _number(row, "fps", path, line), _number(row, "video-frames", path, line, int)))
    return segments


def _write_csv(path: str | Path, columns: tuple[str, ...], rows: list[list]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def _fmt(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def write_metadata_csv(path: str | Path, videos: list[VideoMeta]) -> Path:
    return _write_csv(path, METADATA_COLUMNS,
                      [[v.filename, _fmt(v.duration), _fmt(v.fps), v.frames] for v in videos])


def write_ground_truth_csv(path: str | Path, segments: list[Segment]) -> Path:
    return _write_csv(path, GROUND_TRUTH_COLUMNS, [
        [s.video, _fmt(s.start), _fmt(s.end), s.label, _fmt(s.duration), s.filename, _fmt(s.fps), s.frames,
         ACTION if s.action else BACKGROUND] for s in segments])


def action_classes(segments: list[Segment]) -> list[str]:
    """The sorted action labels of ``segments`` (class ``i`` is ``classes[i]``)."""
    return sorted({s.label for s in segments if s.action})
