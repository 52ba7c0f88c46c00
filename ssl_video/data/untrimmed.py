"""Untrimmed videos with labelled temporal segments: the TSP CSV formats and per-segment clip sampling.

Formats (as distributed with TSP, REFERENCE §3):

* metadata CSV ``filename,video-duration,fps,video-frames``: one row per video;
* ground-truth CSV ``video-name,t-start,t-end,action-label,video-duration,filename,fps,video-frames,
  temporal-region-label``: one row per segment; ``temporal-region-label`` is ``Action`` (``action-label``
  names the class) or ``No action`` (a background gap, ``action-label`` empty).

A video is known by its *key*: its file name relative to the videos directory without the extension
(``v_abc.mp4`` -> ``v_abc``); clip features and global video features are stored under that key.

Sampling (TSP): a segment shorter than one clip is dropped; every other segment gives ``K`` clips per
epoch, each lying entirely inside the segment: random starts in training, ``K`` evenly spaced starts in
validation. Foreground (action) and background segments are treated alike, so the foreground/background
balance is the balance of segments (about 1:1 when background gaps are annotated between actions).

:func:`generate_untrimmed_dataset` writes a synthetic untrimmed dataset: videos made of action segments
(classes of :mod:`ssl_video.data.synth`) separated by background gaps (the same kind of scene with the
object drifting slowly and irregularly: motion unrelated to any class), plus both CSVs per split.
"""

from __future__ import annotations

import csv
import io
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ssl_video.data.clip_dataset import ClipDataset
from ssl_video.data.datasets.base import VideoRecord
from ssl_video.data.media import read_clips
from ssl_video.data.sampling import clip_span, random_start, uniform_starts
from ssl_video.data.transforms import video_transform
from ssl_video.errors import UserError
from ssl_video.recipe.data import ClipConfig

__all__ = [
    "METADATA_COLUMNS", "GROUND_TRUTH_COLUMNS", "ACTION", "BACKGROUND", "VideoMeta", "Segment", "video_key",
    "read_metadata_csv", "read_ground_truth_csv", "write_metadata_csv", "write_ground_truth_csv",
    "action_classes", "usable_segments", "segment_starts", "SegmentClipDataset", "generate_untrimmed_dataset",
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)
    return path


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


# ---------------------------------------------------------------------------------------------- sampling


def usable_segments(segments: list[Segment], span: float) -> list[Segment]:
    """Segments clipped to ``[0, video-duration]`` that still hold one clip of ``span`` seconds."""
    out = []
    for s in segments:
        end = min(s.end, s.duration) if s.duration > 0 else s.end
        start = max(0.0, s.start)
        if end - start + 1e-6 >= span:
            out.append(s if (start, end) == (s.start, s.end) else
                       Segment(s.video, s.filename, start, end, s.label, s.action, s.duration, s.fps, s.frames))
    return out


def segment_starts(segment: Segment, span: float, clips: int, train: bool, rng=None) -> list[float]:
    """Start times (s) of ``clips`` clips inside ``segment``: random (training) or evenly spaced."""
    length = segment.end - segment.start
    if train:
        return [segment.start + random_start(length, span, rng) for _ in range(clips)]
    return [segment.start + s for s in uniform_starts(length, span, clips)]


class SegmentClipDataset(ClipDataset):
    """``K`` clips per usable segment: item ``i`` is clip ``i % K`` of segment ``i // K``.

    A sample holds ``video`` (C x T x H x W), ``label`` (action class, -1 for background), ``region``
    (1 action, 0 background), ``index``, ``start`` (s) and, with ``gvf`` (video key -> vector, held in
    memory), the video's global feature ``gvf``. Keys follow :class:`ClipDataset` (``epoch * len + i``).
    """

    def __init__(self, segments: list[Segment], videos_dir: str | Path, cfg: ClipConfig, classes: list[str],
                 clips_per_segment: int = 5, train: bool = True, seed: int = 0,
                 gvf: dict[str, np.ndarray] | None = None, on_error=None):
        if clips_per_segment < 1:
            raise UserError(f"clips per segment must be at least 1, got {clips_per_segment}")
        self.span = clip_span(cfg.frames, cfg.fps)
        self.segments = usable_segments(segments, self.span)
        self.clips_per_segment = clips_per_segment
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({s.label for s in self.segments if s.action and s.label not in index})
        if unknown:
            raise UserError(f"action label(s) not among the {len(index)} training classes: {', '.join(unknown[:5])}")
        records = [VideoRecord(path=os.path.join(str(videos_dir), s.filename),
                               label=index[s.label] if s.action else -1, video_id=video_key(s.filename),
                               start=s.start, end=s.end)
                   for s in self.segments for _ in range(clips_per_segment)]
        if gvf is not None:
            missing = sorted({r.video_id for r in records if r.video_id not in gvf})
            if missing:
                raise UserError(f"the global video features lack {len(missing)} video(s), e.g. {missing[0]}")
        self.gvf = gvf
        super().__init__(records, cfg, train=train, seed=seed, on_error=on_error)

    def load(self, index: int, epoch: int = 0, attempt: int = 0) -> dict:
        cfg, record = self.cfg, self.records[index]
        rng = self._rng(index, epoch, attempt)
        segment = self.segments[index // self.clips_per_segment]
        if self.train:
            start = segment_starts(segment, self.span, 1, True, rng)[0]
        else:
            start = segment_starts(segment, self.span, self.clips_per_segment, False)[index % self.clips_per_segment]
        clip = read_clips(record.path, [start], cfg.frames, cfg.fps, size=cfg.resize, audio_rate=None,
                          pad=cfg.pad, seek_mode=cfg.seek_mode)[0]
        sample = {
            "video": video_transform(clip.video, cfg.video, self.train, rng),
            "label": torch.tensor(record.label, dtype=torch.long),
            "region": torch.tensor(int(segment.action), dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "start": torch.tensor(clip.start, dtype=torch.float32),
        }
        if self.gvf is not None:
            sample["gvf"] = torch.as_tensor(self.gvf[record.video_id], dtype=torch.float32)
        return sample


# ---------------------------------------------------------------------------------------------- synthetic data

BACKGROUND_MAX_SPEED = 0.25  # background: the scene is played at most this fast (slow, irregular drift)


def _background_frames(frames: np.ndarray, rng: np.random.Generator, fps: float) -> np.ndarray:
    """Replay ``frames`` at a slow, smoothly varying speed that changes sign: no regular bounces."""
    n = len(frames)
    t = np.arange(n) / fps
    period = rng.uniform(2.0, 4.0)
    speed = BACKGROUND_MAX_SPEED * np.sin(2 * np.pi * (t / period + rng.uniform()))
    position = n / 2 + np.cumsum(speed)
    return frames[np.clip(np.round(position).astype(int), 0, n - 1)]


def _timeline(rng: np.random.Generator, frames: int, fps: float, classes: int, segment_seconds, gap_seconds):
    """Pieces ``(first frame, end frame, class or -1)`` covering ``frames``, actions separated by gaps."""
    pieces, pos, action = [], 0, bool(rng.random() < 0.5)
    while pos < frames:
        low, high = segment_seconds if action else gap_seconds
        length = max(1, int(round(rng.uniform(low, high) * fps)))
        end = min(frames, pos + length)
        pieces.append((pos, end, int(rng.integers(classes)) if action else -1))
        pos, action = end, not action
    return pieces


def _render_untrimmed(job: dict) -> str:
    from ssl_video.data.synth import render_video
    from ssl_video.data.video_writer import write_video

    rng = np.random.default_rng(np.random.SeedSequence([job["seed"], 0x75_4E, job["index"]]))
    parts = []
    for first, end, cls in job["pieces"]:
        seconds = (end - first) / job["fps"]
        shown = cls if cls >= 0 else int(rng.integers(job["classes"]))
        frames, _, _ = render_video(shown, job["classes"], rng, seconds, job["fps"], job["size"], clean=False)
        parts.append(frames if cls >= 0 else _background_frames(frames, rng, job["fps"]))
    path = Path(job["file"])
    tmp = path.with_name(path.stem + ".tmp.mp4")
    write_video(tmp, np.concatenate(parts), job["fps"])
    os.replace(tmp, path)
    return job["file"]


def generate_untrimmed_dataset(out: str | Path, videos: int = 24, classes: int = 4, seconds: float = 12.0,
                               fps: float = 16.0, size: tuple[int, int] = (32, 32),
                               segment_seconds: tuple[float, float] = (2.0, 4.0),
                               gap_seconds: tuple[float, float] = (1.5, 3.5), val_fraction: float = 0.25,
                               seed: int = 0, workers: int = 1, progress: bool = True) -> dict:
    """Write untrimmed synthetic videos and their TSP CSVs under ``out``.

    Files: ``out/videos/untrimmed_NNNN.mp4`` (h264, no audio); per split (``train``, ``val``: the last
    ``round(val_fraction * videos)`` videos, at least one when ``videos > 1``) ``out/<split>_metadata.csv``
    and ``out/<split>_groundtruth.csv``. A video alternates action segments (``segment_seconds`` long, a
    random class of :func:`ssl_video.data.synth.class_names`) and background gaps (``gap_seconds``), starting
    with either; every piece is a freshly drawn scene. Video ``i`` depends only on ``(seed, i)``.
    """
    from tqdm.auto import tqdm

    from ssl_video.data.synth import _check_classes, _check_size, class_names

    _check_classes(classes)
    size = _check_size(size)
    if videos < 1 or seconds <= 0 or fps <= 0:
        raise UserError("videos, seconds and fps must be positive")
    for name, (low, high) in (("segment_seconds", segment_seconds), ("gap_seconds", gap_seconds)):
        if not 0 < low <= high:
            raise UserError(f"{name} must be (low, high) with 0 < low <= high, got ({low}, {high})")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    names = class_names(classes)
    num_frames = max(1, int(round(seconds * fps)))
    duration = num_frames / fps
    jobs, segments = [], []
    for i in range(videos):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7154, i]))
        pieces = _timeline(rng, num_frames, fps, classes, segment_seconds, gap_seconds)
        filename = f"untrimmed_{i:04d}.mp4"
        jobs.append({"index": i, "seed": int(seed), "pieces": pieces, "classes": classes, "fps": fps, "size": size,
                     "file": str(out / "videos" / filename)})
        segments.append([Segment(video_key(filename), filename, first / fps, end / fps,
                                 names[cls] if cls >= 0 else "", cls >= 0, duration, float(fps), num_frames)
                         for first, end, cls in pieces])
    bar = tqdm(total=videos, desc="untrimmed videos", unit="video", disable=not progress)
    try:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_render_untrimmed, jobs):
                    bar.update()
        else:
            for job in jobs:
                _render_untrimmed(job)
                bar.update()
    finally:
        bar.close()
    val = min(videos - 1, max(1, round(val_fraction * videos))) if val_fraction > 0 and videos > 1 else 0
    splits = {"train": list(range(videos - val)), "val": list(range(videos - val, videos))}
    counts = {}
    for split, members in splits.items():
        rows = [s for i in members for s in segments[i]]
        write_metadata_csv(out / f"{split}_metadata.csv",
                           [VideoMeta(segments[i][0].filename, duration, float(fps), num_frames) for i in members])
        write_ground_truth_csv(out / f"{split}_groundtruth.csv", rows)
        counts[split] = {"videos": len(members), "action_segments": sum(s.action for s in rows),
                         "background_segments": sum(not s.action for s in rows)}
    return {"out": str(out), "videos": videos, "classes": names, "seconds": duration, "fps": float(fps),
            "size": list(size), "seed": int(seed), "splits": counts}
