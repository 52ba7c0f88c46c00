"""Per-segment clip sampling for TSP: K clips per labelled segment of an untrimmed video.

A segment shorter than one clip is dropped; every other segment gives ``K`` clips per epoch, each lying
entirely inside the segment: random starts in training, ``K`` evenly spaced starts in validation.
Foreground (action) and background segments are treated alike, so the foreground/background balance is the
balance of segments (about 1:1 when background gaps are annotated between actions).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ssl_video.data.clip_dataset import ClipDataset
from ssl_video.data.datasets.base import VideoRecord
from ssl_video.data.datasets.tsp import Segment, video_key
from ssl_video.data.media import read_clips
from ssl_video.data.sampling import clip_span, random_start, uniform_starts
from ssl_video.data.transforms import video_transform
from ssl_video.errors import UserError
from ssl_video.recipe.data import ClipConfig

__all__ = ["usable_segments", "segment_starts", "SegmentClipDataset"]


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
        clip = read_clips(record.path, [start], cfg.frames, cfg.fps, size=cfg.decode_size, audio_rate=None,
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
