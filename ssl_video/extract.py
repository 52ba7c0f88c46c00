"""Clip features of (long) videos: one ``[num_clips, F]`` float32 array per video, with clip start times.

Clips of ``frames`` frames at ``fps`` start every ``stride`` frames (of that rate) from 0, full windows only;
a video shorter than one clip gives one padded clip (the last frame repeated). Frames are decoded with the
short side at the encoder's resize size, centre-cropped and normalised (:class:`ClipProtocol` from
:mod:`ssl_video.evaluation.features`); the encoder runs in eval mode. A video is decoded in chunks of
``batch_size`` clips, so memory does not grow with its length.

Outputs (the layout :mod:`ssl_video.evaluation.features_io` reads):

* ``npy``: ``OUT/<key>.npy`` and ``OUT/<key>.times.npy`` per video (``key`` = the video's path relative to
  the videos directory without the extension), each written to a temporary name and renamed, times first:
  a features file that exists is complete. ``OUT/extract.json`` records the encoder and the clip protocol.
* ``h5``: one dataset per video keyed by ``key`` with a ``start_times`` attribute; file attributes record the
  encoder and the protocol. Finished videos first go to ``OUT.parts/`` (as above); the HDF5 file is written
  at the end to a temporary name and renamed, so a file that exists is complete. With ``--shard i/n`` the
  file is ``<stem>.shard-<i>-of-<n><suffix>``; a run without ``--shard`` reuses every finished video (parts
  and shard files) and writes the whole file, which merges the shards.

Resuming: videos already done (with the same encoder weights and protocol) are skipped; anything else
under ``OUT`` is refused. Sharding: shard ``i`` (0-based) of ``n`` takes videos ``i, i+n, i+2n ...`` of the
sorted list, so the shards' union is the unsharded output. Unreadable videos are skipped, counted and named
in the summary (``<OUT>/extract_report*.json`` or ``<h5 file>.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssl_video.data.untrimmed import video_key
from ssl_video.errors import UserError
from ssl_video.evaluation.features import ClipProtocol, EncoderRef

__all__ = ["VideoItem", "list_videos", "parse_shard", "shard_videos", "shard_path", "iter_clip_features",
           "extract", "compute_gvf", "read_gvf", "MANIFEST"]

MANIFEST = "extract.json"
TIMES = ".times"


@dataclass(frozen=True)
class VideoItem:
    key: str  # stored name
    path: str


def list_videos(videos: str | None = None, list_file: str | None = None) -> list[VideoItem]:
    """Videos under ``videos`` (recursively), or those named by ``list_file`` (one path per line, relative to
    ``videos`` when given); sorted by key. Keys must be unique."""
    from ssl_video.data.datasets.base import find_videos, read_list_file, require_dir

    if videos is None and list_file is None:
        raise UserError("give --videos DIR or --list FILE")
    root = require_dir(videos, "videos directory") if videos is not None else None
    if list_file is None:
        items = [VideoItem(video_key(os.path.relpath(p, root)), p) for p in find_videos(root)]
    else:
        if not Path(list_file).is_file():
            raise UserError(f"video list not found: {list_file}")
        items = []
        for line in read_list_file(list_file):
            path = os.path.join(root, line) if root is not None and not os.path.isabs(line) else line
            key = video_key(line if root is not None and not os.path.isabs(line) else os.path.basename(line))
            items.append(VideoItem(key, path))
    keys: dict[str, str] = {}
    for item in items:
        if item.key in keys:
            raise UserError(f"two videos share the name '{item.key}': {keys[item.key]} and {item.path}")
        keys[item.key] = item.path
    if not items:
        raise UserError(f"no videos found in {list_file or videos}")
    return sorted(items, key=lambda v: v.key)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def shard_videos(items: list[VideoItem], shard: tuple[int, int]) -> list[VideoItem]:
    i, n = shard
    return items[i::n]


def shard_path(out: Path, shard: tuple[int, int]) -> Path:
    """The HDF5 file of a shard (``out`` itself when unsharded)."""
    i, n = shard
    return out if n == 1 else out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix}")


# ---------------------------------------------------------------------------------------------- decoding


class _ChunkStream(torch.utils.data.IterableDataset):
    """Chunks of decoded, normalised clips: ``{"key", "video" (n x C x T x H x W), "starts", "last"}``, or
    ``{"key", "error"}`` for a video that cannot be read. Workers take every ``workers``-th video."""

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
        from ssl_video.recipe import VideoAugment

        p = self.protocol
        span = clip_span(p.frames, p.fps)
        augment = VideoAugment(crop=p.crop, mean=p.mean, std=p.std)
        starts: list[float] = []

        def first_chunk(duration: float) -> list[float]:
            starts.extend(sliding_starts(duration, span, self.stride, cover_end=False))
            return starts[:self.chunk]

        if not os.path.isfile(item.path):
            yield {"key": item.key, "error": "missing file"}
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
            yield {"key": item.key, "error": exc.reason}


@torch.no_grad()
def iter_clip_features(model: torch.nn.Module, videos: list[VideoItem], protocol: ClipProtocol,
                       stride_seconds: float, *, device: str = "auto", batch_size: int = 32, workers: int = 2,
                       progress: bool = True, desc: str = "extracting") -> Iterator[tuple]:
    """Yields ``(key, features [num_clips, F] float32, start times)`` per readable video and
    ``(key, None, reason)`` per unreadable one, as videos finish (not in list order with workers > 1)."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from ssl_video.evaluation.features import torch_device

    if batch_size < 1 or stride_seconds <= 0:
        raise UserError("the batch size and the stride must be positive")
    dev = torch_device(device)
    model = model.to(dev).eval()
    workers = min(workers, len(videos))
    loader = DataLoader(_ChunkStream(videos, protocol, stride_seconds, batch_size), batch_size=None,
                        num_workers=workers, persistent_workers=False)
    pending: dict[str, tuple[list, list]] = {}
    bar = tqdm(total=len(videos), desc=desc, unit="video", dynamic_ncols=True, disable=not progress)
    clips, started = 0, time.time()
    try:
        for item in loader:
            key = item["key"]
            if "error" in item:
                pending.pop(key, None)
                bar.update(1)
                yield key, None, item["error"]
                continue
            feats, times = pending.setdefault(key, ([], []))
            feats.append(model(item["video"].to(dev, non_blocking=True)).float().cpu())
            times.extend(item["starts"])
            clips += len(item["starts"])
            if item["last"]:
                del pending[key]
                bar.update(1)
                bar.set_postfix(clips_per_s=f"{clips / max(time.time() - started, 1e-9):.1f}")
                yield key, torch.cat(feats).numpy().astype(np.float32), np.asarray(times, dtype=np.float64)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------- storage


def _signature(encoder: EncoderRef, protocol: ClipProtocol, stride: int) -> dict:
    """What must match for features to be mixed in one output."""
    p = asdict(protocol)
    p.pop("clips", None)
    return {"weights_sha256": encoder.weights_hash, "protocol": json.dumps(p, sort_keys=True), "stride": int(stride)}


def _check_signature(found: dict, wanted: dict, where: Path) -> None:
    diff = [k for k in wanted if str(found.get(k)) != str(wanted[k])]
    if diff:
        raise UserError(f"{where} holds features of another encoder or clip protocol ({', '.join(diff)} "
                        "differ): choose another --out or remove it")


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class _NpyStore:
    """``<key>.npy`` + ``<key>.times.npy`` per video under ``root``, with a manifest."""

    def __init__(self, root: Path, signature: dict, meta: dict):
        self.root = root
        manifest = root / MANIFEST
        if manifest.is_file():
            _check_signature(json.loads(manifest.read_text()), signature, root)
        else:
            root.mkdir(parents=True, exist_ok=True)
            from ssl_video.engine.run_dir import write_json

            write_json(manifest, {**signature, **meta})

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, features: np.ndarray, times: np.ndarray) -> None:
        _save_npy(self.root / f"{key}{TIMES}.npy", times)
        _save_npy(self.path(key), features)

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return np.load(self.path(key)), np.load(self.root / f"{key}{TIMES}.npy")


class _H5Sources:
    """Finished HDF5 files (this output, its shards) that already hold some videos."""

    def __init__(self, out: Path, signature: dict):
        import h5py

        self.opened: dict[Path, object] = {}
        candidates = [out, *sorted(out.parent.glob(f"{out.stem}.shard-*-of-*{out.suffix}"))]
        for path in candidates:
            if path.is_file():
                f = h5py.File(path, "r")
                self.opened[path] = f
                _check_signature(dict(f.attrs), signature, path)

    def find(self, key: str):
        for f in self.opened.values():
            if key in f:
                return f[key]
        return None

    def close(self) -> None:
        for f in self.opened.values():
            f.close()


def _write_h5(path: Path, keys: list[str], lookup, attrs: dict) -> None:
    import h5py

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        for name, value in attrs.items():
            f.attrs[name] = value
        for key in keys:
            features, times = lookup(key)
            ds = f.create_dataset(key, data=np.asarray(features, dtype=np.float32))
            if times is not None:
                ds.attrs["start_times"] = np.asarray(times, dtype=np.float64)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- extract


def extract(encoder: EncoderRef, videos: list[VideoItem], out: str | Path, *, fmt: str = "h5",
            protocol: ClipProtocol, stride: int = 16, shard: tuple[int, int] = (0, 1), device: str = "auto",
            batch_size: int = 32, workers: int = 2, progress: bool = True) -> dict:
    """Extract clip features of this shard's videos into ``out`` (see the module notes); returns a summary."""
    if fmt not in ("h5", "npy"):
        raise UserError(f"--format must be h5 or npy, got {fmt!r}")
    if stride < 1:
        raise UserError(f"--stride must be at least 1 frame, got {stride}")
    out = Path(out)
    if fmt == "h5" and out.suffix.lower() not in (".h5", ".hdf5"):
        raise UserError(f"--format h5 writes one file: give --out a name ending in .h5, got {out}")
    started = time.time()
    mine = shard_videos(videos, shard)
    signature = _signature(encoder, protocol, stride)
    meta = {"encoder": json.dumps(encoder.provenance, default=str), "clip_len": protocol.frames,
            "fps": protocol.fps, "stride_frames": int(stride)}
    parts = _NpyStore(out if fmt == "npy" else out.with_name(out.name + ".parts"), signature, meta)
    sources = _H5Sources(out, signature) if fmt == "h5" else None
    try:
        done = [v for v in mine if parts.has(v.key) or (sources is not None and sources.find(v.key) is not None)]
        done_keys = {v.key for v in done}
        todo = [v for v in mine if v.key not in done_keys]
        skipped: dict[str, str] = {}
        clips = 0
        for key, features, times in iter_clip_features(
                encoder.model, todo, protocol, stride / protocol.fps, device=device, batch_size=batch_size,
                workers=workers, progress=progress):
            if features is None:
                skipped[key] = times
                continue
            parts.write(key, features, times)
            clips += len(times)
        final = shard_path(out, shard) if fmt == "h5" else out
        ready = [v.key for v in mine if v.key not in skipped]
        own = sources.opened.get(final) if sources is not None else None
        if fmt == "h5" and (todo or own is None or not all(k in own for k in ready)):

            def lookup(key: str):
                if parts.has(key):
                    return parts.read(key)
                ds = sources.find(key)
                return ds[()], ds.attrs["start_times"]

            _write_h5(final, ready, lookup, {**signature, **meta})
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
    from ssl_video.engine.run_dir import write_json

    suffix = "" if shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"
    report = out / f"extract_report{suffix}.json" if fmt == "npy" else final.with_name(final.name + ".json")
    write_json(report, summary)
    summary["report"] = str(report)
    return summary


# ---------------------------------------------------------------------------------------------- GVF


def compute_gvf(encoder: EncoderRef, videos: list[VideoItem], out: str | Path, *, protocol: ClipProtocol,
                stride: int = 16, device: str = "auto", batch_size: int = 32, workers: int = 2,
                progress: bool = True) -> dict:
    """Global video features: the max over time of each video's clip features, one ``[F]`` vector per video
    keyed by name, in one HDF5 file (written to a temporary name, then renamed)."""
    out = Path(out)
    vectors: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for key, features, reason in iter_clip_features(encoder.model, videos, protocol, stride / protocol.fps,
                                                    device=device, batch_size=batch_size, workers=workers,
                                                    progress=progress, desc="global video features"):
        if features is None:
            skipped[key] = reason
        else:
            vectors[key] = features.max(axis=0)
    if not vectors:
        raise UserError("no video could be decoded: nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    attrs = {**_signature(encoder, protocol, stride), "encoder": json.dumps(encoder.provenance, default=str),
             "pooling": "max over clips"}
    _write_h5(out, sorted(vectors), lambda k: (vectors[k], None), attrs)
    return {"out": str(out), "videos": len(videos), "written": len(vectors), "skipped": len(skipped),
            "skipped_videos": skipped, "dim": int(next(iter(vectors.values())).shape[0])}


def read_gvf(path: str | Path) -> dict[str, np.ndarray]:
    """A GVF file as ``key -> [F]`` float32 vectors, read once into memory."""
    from ssl_video.evaluation.features_io import read_features

    return {key: array[0] for key, array in read_features(path).features.items()}
