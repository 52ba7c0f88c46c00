"""Clip features of (long) videos: one ``[num_clips, F]`` float32 array per video, with clip start times.

Clips of ``frames`` frames at ``fps`` start every ``stride`` frames (of that rate) from 0, full windows only;
a video shorter than one clip gives one padded clip (the last frame repeated). Frames are decoded with the
short side at the encoder's resize size, centre-cropped and normalised (:class:`ClipProtocol`); the encoder
runs in eval mode. A video is decoded in chunks of ``batch_size`` clips, so memory does not grow with its
length.

Outputs (the layouts of :mod:`ssl_video.features.files`, which reads them):

* ``npy``: ``OUT/<key>.npy`` and ``OUT/<key>.times.npy`` per video (``key``: see
  :mod:`ssl_video.features.videos`), each written to a temporary name and renamed, times first: a features
  file that exists is complete. ``OUT/extract.json`` records the encoder and the clip protocol.
* ``h5``: one dataset per video keyed by ``key`` with a ``start_times`` attribute; file attributes record the
  encoder and the protocol. Finished videos first go to ``OUT.parts/`` (as above); the HDF5 file is written
  at the end to a temporary name and renamed, so a file that exists is complete. With ``--shard i/n`` the
  file is ``<stem>.shard-<i>-of-<n><suffix>``; a run without ``--shard`` reuses every finished video (parts
  and shard files) and writes the whole file, which merges the shards.

Resuming: videos already done (with the same encoder weights and protocol) are skipped; anything else
under ``OUT`` is refused. Unreadable videos are skipped, counted and named in the summary
(``<OUT>/extract_report*.json`` or ``<h5 file>.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ssl_video.data.bad_files import BadFiles
from ssl_video.errors import UserError
from ssl_video.features.files import H5Sources, NpyStore, signature, write_h5
from ssl_video.features.protocol import ClipProtocol
from ssl_video.features.videos import VideoItem, shard_path, shard_videos
from ssl_video.files import write_json

__all__ = ["iter_clip_features", "extract"]


# ---------------------------------------------------------------------------------------------- decoding


class _ChunkStream(torch.utils.data.IterableDataset):
    """Chunks of decoded, normalised clips: ``{"key", "video" (n x C x T x H x W), "starts", "last"}``, or
    ``{"key", "skipped": ["key<TAB>reason"]}`` for a video that cannot be read. Workers take every
    ``workers``-th video."""

    def __init__(self, videos: list[VideoItem], protocol: ClipProtocol, stride_seconds: float, chunk: int):
        self.videos, self.protocol, self.stride, self.chunk = videos, protocol, stride_seconds, chunk

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.videos if info is None else self.videos[info.id::info.num_workers]
        for item in mine:
            yield from self._video(item)

    def _video(self, item: VideoItem):
        import random

        from ssl_video.data.media import MediaError, read_clips
        from ssl_video.data.sampling import clip_span, sliding_starts
        from ssl_video.data.transforms import video_transform

        p = self.protocol
        span = clip_span(p.frames, p.fps)
        augment = p.augment()
        starts: list[float] = []

        def first_chunk(duration: float) -> list[float]:
            starts.extend(sliding_starts(duration, span, self.stride, cover_end=False))
            return starts[:self.chunk]

        if not os.path.isfile(item.path):
            yield {"key": item.key, "skipped": [f"{item.key}\tmissing file"]}
            return
        lo = 0
        try:
            while True:
                wanted = first_chunk if lo == 0 else starts[lo:lo + self.chunk]
                clips = read_clips(item.path, wanted, p.frames, p.fps, size=p.resize, audio_rate=None)
                video = torch.stack([video_transform(c.video, augment, False, random.Random(0)) for c in clips])
                lo += len(clips)
                yield {"key": item.key, "video": video, "starts": [c.start for c in clips], "last": lo >= len(starts)}
                if lo >= len(starts):
                    return
        except MediaError as exc:
            yield {"key": item.key, "skipped": [f"{item.key}\t{exc.reason}"]}


def iter_clip_features(model: torch.nn.Module, videos: list[VideoItem], protocol: ClipProtocol,
                       stride_seconds: float, bad_files: BadFiles, *, device: str = "auto", batch_size: int = 32,
                       workers: int = 2, progress: bool = True, desc: str = "extracting") -> Iterator[tuple]:
    """Yields ``(key, features [num_clips, F] float32, start times)`` per readable video, as videos finish
    (not in list order with workers > 1); every unreadable video goes to ``bad_files`` under its key."""
    from torch.utils.data import DataLoader

    from ssl_video.console import progress as progress_counter
    from ssl_video.device import resolve_device
    from ssl_video.features.extraction import run_batches

    if batch_size < 1 or stride_seconds <= 0:
        raise UserError("the batch size and the stride must be positive")
    dev = resolve_device(device)
    workers = min(workers, len(videos))
    loader = DataLoader(_ChunkStream(videos, protocol, stride_seconds, batch_size), batch_size=None,
                        num_workers=workers, persistent_workers=False)
    pending: dict[str, tuple[list, list]] = {}
    bar = progress_counter(len(videos), desc, "video", enabled=progress)
    clips, started = 0, time.time()

    def items():
        for item in loader:
            if "video" not in item:  # unreadable (perhaps after some chunks): done with it
                pending.pop(item["key"], None)
                bar.update(1)
            yield item

    try:
        for item, out in run_batches(model, items(), dev, bad_files):
            key = item["key"]
            feats, times = pending.setdefault(key, ([], []))
            feats.append(out)
            times.extend(item["starts"])
            clips += len(item["starts"])
            if item["last"]:
                del pending[key]
                bar.update(1)
                bar.set_postfix(clips_per_s=f"{clips / max(time.time() - started, 1e-9):.1f}")
                yield key, torch.cat(feats).numpy().astype(np.float32), np.asarray(times, dtype=np.float64)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------- extract


def extract(encoder, videos: list[VideoItem], out: str | Path, *, fmt: str = "h5", protocol: ClipProtocol,
            stride: int = 16, shard: tuple[int, int] = (0, 1), device: str = "auto", batch_size: int = 32,
            workers: int = 2, progress: bool = True) -> dict:
    """Extract clip features of this shard's videos into ``out`` (see the module notes); returns a summary.

    ``encoder`` is a :class:`~ssl_video.models.io.ResolvedEncoder`."""
    if fmt not in ("h5", "npy"):
        raise UserError(f"--format must be h5 or npy, got {fmt!r}")
    if stride < 1:
        raise UserError(f"--stride must be at least 1 frame, got {stride}")
    out = Path(out)
    if fmt == "h5" and out.suffix.lower() not in (".h5", ".hdf5"):
        raise UserError(f"--format h5 writes one file: give --out a name ending in .h5, got {out}")
    started = time.time()
    mine = shard_videos(videos, shard)
    wanted = signature(encoder, protocol, stride)
    meta = {"encoder": json.dumps(encoder.provenance, default=str), "clip_len": protocol.frames,
            "fps": protocol.fps, "stride_frames": int(stride)}
    sources = H5Sources(out, wanted) if fmt == "h5" else None  # finished files are checked first
    try:
        parts = NpyStore(out if fmt == "npy" else out.with_name(out.name + ".parts"), wanted, meta)
    except UserError:
        if sources is not None:
            sources.close()
        raise
    bad = BadFiles()
    try:
        done = [v for v in mine if parts.has(v.key) or (sources is not None and sources.find(v.key) is not None)]
        done_keys = {v.key for v in done}
        todo = [v for v in mine if v.key not in done_keys]
        clips = 0
        for key, features, times in iter_clip_features(
                encoder.model, todo, protocol, stride / protocol.fps, bad, device=device, batch_size=batch_size,
                workers=workers, progress=progress):
            parts.write(key, features, times)
            clips += len(times)
        skipped = bad.as_dict()
        final = shard_path(out, shard) if fmt == "h5" else out
        ready = [v.key for v in mine if v.key not in skipped]
        own = sources.opened.get(final) if sources is not None else None
        if fmt == "h5" and (todo or own is None or not all(k in own for k in ready)):

            def lookup(key: str):
                if parts.has(key):
                    return parts.read(key)
                ds = sources.find(key)
                return ds[()], ds.attrs["start_times"]

            write_h5(final, ready, lookup, {**wanted, **meta})
    finally:
        if sources is not None:
            sources.close()
    if fmt == "h5" and shard[1] == 1:
        shutil.rmtree(parts.root, ignore_errors=True)  # everything is in the file now
    summary = {"out": str(final), "format": fmt, "shard": f"{shard[0]}/{shard[1]}", "videos": len(mine),
               "extracted": len(todo) - len(skipped), "already_done": len(done), "skipped": len(skipped),
               "skipped_videos": skipped, "clips": clips, "seconds": round(time.time() - started, 2),
               "clip_len": protocol.frames, "fps": protocol.fps, "stride_frames": int(stride),
               "encoder": encoder.provenance, "encoder_weights_sha256": encoder.weights_hash}
    suffix = "" if shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"
    report = out / f"extract_report{suffix}.json" if fmt == "npy" else final.with_name(final.name + ".json")
    write_json(report, summary)
    summary["report"] = str(report)
    return summary
