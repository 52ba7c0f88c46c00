"""Turn dataset records into training/evaluation samples: decode -> sample -> augment -> dict of tensors.

A sample is a plain dict: ``video`` (C x T x H x W float, or V x C x T x H x W for ``views`` > 1 or
N x ... for several clips), ``audio`` (1 x n_mels x frames log-mel, same leading dims), ``has_audio``
(bool), ``label`` (int, -1 when unlabeled), ``index`` (record index) and ``start`` (seconds). All randomness of a sample derives from
(seed, epoch, index), so a resumed run sees exactly the samples an uninterrupted one would.

Bad files never stop a job. With ``on_error="resample"`` (training) a failing video is replaced by another
random one, so batch sizes stay equal across processes; with ``"skip"`` (evaluation) the sample is
dropped by :func:`collate_clips`. Either way the failing path travels in the batch under ``skipped``,
so the consumer counts and reports each bad file once, whichever worker met it
(:class:`~ssl_video.data.bad_files.BadFiles`).

A training set whose clip config sets ``require_audio`` or ``min_seconds`` (the official STiCA dataset's
filter) probes every file once when it is built (:func:`screen_records`) and keeps only the videos that pass;
one line reports what was dropped.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
from torch.utils.data import Dataset

from ssl_video.data.datasets.base import VideoRecord
from ssl_video.data.media import MediaError, probe, read_clips
from ssl_video.data.sampling import clip_span, make_sampler
from ssl_video.data.transforms import audio_features, audio_transform, video_transform
from ssl_video.errors import UserError
from ssl_video.recipe.data import ClipConfig

__all__ = ["ClipDataset", "collate_clips", "screen_records", "screen_reason"]


def screen_reason(path: str, require_audio: bool, min_seconds: float,
                  durations: Literal["content", "header"] = "content") -> str | None:
    """Why a video fails the filter (``"unreadable"``, ``"no audio"``, ``"no duration"``, ``"short"``), or None
    when it passes.

    As the official STiCA dataset (``valid_video``): it needs an audio stream (``require_audio``) and both
    streams must last more than ``min_seconds`` (strictly). ``durations="content"``: the video stream's length
    is what its frames span, and an audio stream whose duration the container does not give is taken to last
    as long as the video. ``"header"`` (official: ffprobe's stream ``duration``): both lengths are the
    container header's, and a stream without one fails as ``"no duration"`` (the official ``float()`` of the
    missing field raises and the video is dropped; MKV and WebM streams usually carry none).
    """
    try:
        info = probe(path, decode=False)
    except MediaError:
        return "unreadable"
    if require_audio and not info.has_audio:
        return "no audio"
    if durations == "header":
        video, audio = info.header_duration, info.audio_header_duration
        if min_seconds > 0 and (video is None or (info.has_audio and audio is None)):
            return "no duration"
    else:
        video = info.duration
        audio = info.audio_duration if info.audio_duration is not None else info.duration
    lengths = [video] + ([audio] if info.has_audio else [])
    if min_seconds > 0 and min(lengths) <= min_seconds:
        return "short"
    return None


def screen_records(records: list[VideoRecord], require_audio: bool, min_seconds: float,
                   durations: Literal["content", "header"] = "content",
                   workers: int | None = None) -> tuple[list[VideoRecord], dict[str, int]]:
    """The records that pass :func:`screen_reason` (order kept) and the count dropped per reason."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(lambda r: screen_reason(r.path, require_audio, min_seconds, durations), records))
    dropped: dict[str, int] = {}
    for reason in reasons:
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
    return [r for r, reason in zip(records, reasons) if reason is None], dropped


def _stderr(message: str) -> None:
    print(f"[ssl-video] {message}", file=sys.stderr, flush=True)


class ClipDataset(Dataset):
    def __init__(self, records: list[VideoRecord], cfg: ClipConfig, train: bool, seed: int = 0,
                 on_error: Literal["resample", "skip"] | None = None, max_retries: int = 20,
                 log: Callable[[str], None] = _stderr):
        records = list(records)
        self.dropped: dict[str, int] = {}
        if train and (cfg.require_audio or cfg.min_seconds > 0):
            listed = len(records)
            records, self.dropped = screen_records(records, cfg.require_audio, cfg.min_seconds, cfg.screen_durations)
            rule = " and ".join((["an audio stream"] if cfg.require_audio else [])
                                + ([f"both streams longer than {cfg.min_seconds:g} s"] if cfg.min_seconds > 0 else []))
            counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
            log(f"video filter ({rule}): kept {len(records)} of {listed} videos; dropped: {counts}")
            if not records:
                raise UserError(f"no video of the {listed} listed passes the filter ({rule}): check the files, or "
                                "set data.clip.require_audio=false data.clip.min_seconds=0")
        self.records = records
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.on_error = on_error or ("resample" if train else "skip")
        self.max_retries = max_retries
        self._logmel = audio_features(cfg.audio) if cfg.audio is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int, epoch: int, attempt: int = 0) -> random.Random:
        # Every random choice of a sample (clip start, crop, flip, jitter) derives from
        # (seed, epoch, index): the same in any worker, after any resume. Evaluation uses epoch 0.
        return random.Random(f"{self.seed}:{epoch}:{index}:{attempt}")

    def load(self, index: int, epoch: int = 0, attempt: int = 0) -> dict:
        """Decode and transform record ``index``; raises :class:`MediaError` for a bad file."""
        cfg = self.cfg
        record = self.records[index]
        rng = self._rng(index, epoch, attempt)
        span = clip_span(cfg.frames, cfg.fps)
        clips = read_clips(record.path, make_sampler(cfg.sampling, span, rng), cfg.frames, cfg.fps,
                           size=cfg.decode_size, audio_rate=cfg.audio.sample_rate if cfg.audio else None,
                           audio_seconds=cfg.audio_seconds, pad=cfg.pad, seek_mode=cfg.seek_mode,
                           audio_overrun=cfg.audio_overrun)
        videos, audios = [], []
        for clip in clips:
            for _ in range(cfg.views):
                videos.append(video_transform(clip.video, cfg.video, self.train, rng))
            if self._logmel is not None:
                audios.append(audio_transform(clip.audio, self._logmel, cfg.audio, self.train, rng))
        single = len(videos) == 1
        sample = {
            "video": videos[0] if single else torch.stack(videos),
            "has_audio": torch.tensor(clips[0].has_audio),
            "label": torch.tensor(record.label, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "start": torch.tensor(clips[0].start, dtype=torch.float32),
        }
        if audios:
            sample["audio"] = audios[0] if len(audios) == 1 else torch.stack(audios)
        return sample

    def __getitem__(self, key: int) -> dict:
        """``key = epoch * len(self) + index``: samplers that encode the epoch this way get fresh
        augmentations every epoch that are still reproducible (plain indices mean epoch 0)."""
        epoch, index = divmod(int(key), len(self.records))
        skipped = []
        candidate = index
        for attempt in range(self.max_retries + 1):
            try:
                sample = self.load(candidate, epoch, attempt)
                sample["skipped"] = skipped
                return sample
            except MediaError as exc:
                skipped.append(f"{exc.path}\t{exc.reason}")
                if self.on_error == "skip":
                    return {"skipped": skipped}
                candidate = self._rng(index, epoch, attempt + 1).randrange(len(self.records))
        raise MediaError(self.records[index].path,
                         f"{self.max_retries + 1} videos in a row failed to decode; is the dataset readable?")


def collate_clips(batch: list[dict]) -> dict:
    """Stack samples, dropping skipped ones; ``skipped`` lists ``"path<TAB>reason"`` of every bad file met."""
    skipped = [s for sample in batch for s in sample.get("skipped", [])]
    good = [sample for sample in batch if "video" in sample]
    out: dict = {"skipped": skipped}
    if good:
        for key in good[0]:
            if key != "skipped":
                out[key] = torch.stack([sample[key] for sample in good])
    return out

