"""A synthetic untrimmed dataset in the TSP format (``ssl-video data synth-untrimmed``).

Videos are made of action segments (classes of :mod:`ssl_video.data.synth`) separated by background gaps
(the same kind of scene with the object drifting slowly and irregularly: motion unrelated to any class),
plus the metadata and ground-truth CSVs per split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_video.data.datasets.tsp import (
    Segment,
    VideoMeta,
    video_key,
    write_ground_truth_csv,
    write_metadata_csv,
)
from ssl_video.errors import UserError
from ssl_video.files import write_atomic

__all__ = ["generate_untrimmed_dataset"]


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
    write_atomic(job["file"], lambda tmp: write_video(tmp, np.concatenate(parts), job["fps"]))
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
    from ssl_video.data.synth import _check_classes, _check_size, class_names, render_all

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
    render_all(_render_untrimmed, jobs, workers, "untrimmed videos", progress)
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
