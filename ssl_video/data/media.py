"""The one place that decodes media (torchcodec).

A *clip* is ``num_frames`` frames sampled at a target ``fps`` starting at time ``start`` (seconds from the
first frame of the video stream), plus
the mono audio window, resampled to ``audio_rate``, that covers the same span (or a window of
``audio_seconds`` centred on the clip). Frame ``i`` of a clip is the source frame on screen at time
``start + i / fps``, so any source frame rate (constant or variable) maps onto the target rate.

Seeking: ``seek_mode="exact"`` (the default) first opens the file with the container's own index (no scan
of the file's packets) and keeps the frames only when each one's presentation time and duration cover the
time asked for; otherwise (variable frame rate with a misleading index, a repaired truncated read) the
file is opened again in torchcodec's exact mode, which scans every packet. The answer is the same frames
either way; the scan, which cost about 40 % of a clip's time on 10 s files, is paid only when needed.
``"approximate"`` keeps the index's answer unchecked.

Robustness rules:
- times past the end of the video repeat the last frame (``pad="repeat"``) or wrap around
  (``pad="loop"``): a video shorter than a clip never crashes;
- a video without an audio stream gives zeros and ``has_audio=False``;
- any decoding failure (zero-byte, corrupt, truncated file) raises :class:`MediaError`, which
  datasets catch, count and report.

Spatial resizing happens right after decoding, on uint8 (torch's vectorised antialiased bilinear
kernel), before any float work. Measured here, it is faster than FFmpeg's scaler inside the decoder
(``benchmarks/decode.py``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["MediaError", "MediaInfo", "Clip", "probe", "read_clip", "read_clips", "read_audio", "target_size",
           "resize_frames"]

_EPS = 1e-6  # seconds; guards t = k / fps against float round-off just below a frame's pts


class MediaError(Exception):
    """A media file could not be read. ``path`` names it; ``reason`` is one line."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds of video
    fps: float  # average frame rate
    num_frames: int
    width: int
    height: int
    begin: float  # first frame's presentation time (s)
    end: float  # end of the last frame (s)
    has_audio: bool
    audio_sample_rate: int | None
    audio_duration: float | None
    header_duration: float | None = None  # the container header's video stream duration (None: not given)
    audio_header_duration: float | None = None  # the same for the audio stream


@dataclass
class Clip:
    video: torch.Tensor  # uint8, T x C x H x W
    audio: torch.Tensor  # float32, (n,) mono; zeros when the file has no audio
    has_audio: bool
    start: float  # seconds from the first frame
    frame_times: torch.Tensor  # float64 (T,), presentation times fetched (after padding rules)
    audio_start: float  # seconds; time of audio sample 0 (may be < 0: zero padded)
    duration: float  # seconds of video in the whole file


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else "no message"
    line = re.sub(r"^\w+, \S+\.cpp:\d+, ", "", line)  # drop torchcodec's source location
    return f"{type(exc).__name__}: {line}"


def _check_file(path: str) -> None:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise MediaError(path, f"cannot open: {exc.strerror or exc}") from None
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def _video_decoder(path: str, seek_mode: str):
    from torchcodec.decoders import VideoDecoder

    try:
        return VideoDecoder(path, seek_mode=seek_mode, dimension_order="NCHW", num_ffmpeg_threads=1)
    except Exception as exc:  # torchcodec raises RuntimeError/ValueError for unreadable input
        raise MediaError(path, f"cannot decode video: {_one_line(exc)}") from None


def _stream_bounds(meta) -> tuple[float, float, int, float]:
    fps = float(meta.average_fps or 0.0)
    n = int(meta.num_frames or 0)
    begin = float(meta.begin_stream_seconds or 0.0)
    end = meta.end_stream_seconds
    if end is None:
        end = begin + (meta.duration_seconds or (n / fps if fps else 0.0))
    end = float(end)
    if not fps and n and end > begin:
        fps = n / (end - begin)
    return begin, end, n, fps


def target_size(height: int, width: int, size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Output (H, W): ``int`` scales the short side to it (aspect kept, even rounding), a pair is exact."""
    if size is None:
        return None
    if isinstance(size, int):
        scale = size / min(height, width)
        return (max(1, round(height * scale)), max(1, round(width * scale)))
    return (int(size[0]), int(size[1]))


def resize_frames(frames: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize ``T x C x H x W`` uint8 frames (antialiased bilinear, stays uint8).

    The decoder hands out channels-last memory; torch's uint8 kernel is fastest on exactly that
    layout (about 5x faster than on a contiguous copy here), so the frames are not copied first.
    """
    if size is None or tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return torch.nn.functional.interpolate(frames, size=tuple(size), mode="bilinear", antialias=True,
                                           align_corners=False)


def probe(path: str | os.PathLike, decode: bool = True) -> MediaInfo:
    """Read a file's metadata; with ``decode`` also decode its first and last frames and audio.

    Decoding both ends catches corrupt and truncated files whose header still looks fine.
    """
    path = str(path)
    _check_file(path)
    decoder = _video_decoder(path, "exact")
    meta = decoder.metadata
    begin, end, n, fps = _stream_bounds(meta)
    if n <= 0 or end <= begin:
        raise MediaError(path, "video stream has no frames")
    if decode:
        try:
            decoder.get_frame_at(0)
            decoder.get_frame_at(n - 1)
        except Exception as exc:
            raise MediaError(path, f"cannot decode frames: {_one_line(exc)}") from None
    audio_rate = audio_duration = audio_header = None
    has_audio = False
    audio = _audio_decoder(path, None)
    if audio is not None:
        has_audio = True
        audio_rate = int(audio.metadata.sample_rate)
        audio_duration = audio.metadata.duration_seconds
        audio_header = audio.metadata.duration_seconds_from_header
        if decode:
            try:
                audio.get_samples_played_in_range(0.0, min(0.1, float(audio_duration or 0.1)))
            except Exception as exc:
                raise MediaError(path, f"cannot decode audio: {_one_line(exc)}") from None
    return MediaInfo(path=path, duration=end - begin, fps=fps, num_frames=n, width=int(meta.width),
                     height=int(meta.height), begin=begin, end=end, has_audio=has_audio,
                     audio_sample_rate=audio_rate,
                     audio_duration=_seconds(audio_duration),
                     header_duration=_seconds(meta.duration_seconds_from_header),
                     audio_header_duration=_seconds(audio_header))


def _seconds(value) -> float | None:
    return float(value) if value is not None else None


def _audio_decoder(path: str, sample_rate: int | None):
    """An AudioDecoder, or None when the file has no audio stream."""
    from torchcodec.decoders import AudioDecoder

    try:
        return AudioDecoder(path, sample_rate=sample_rate, num_channels=1)
    except Exception as exc:
        # torchcodec says "The best audio stream is unknown ..." (ValueError) when there is none
        if isinstance(exc, ValueError) and "audio stream" in str(exc).lower():
            return None
        raise MediaError(path, f"cannot decode audio: {_one_line(exc)}") from None


def clip_times(start: float, num_frames: int, fps: float, begin: float, end: float, last_frame: float,
               pad: Literal["repeat", "loop"] = "repeat") -> list[float]:
    """Presentation times to fetch: ``begin + start + i / fps``, kept inside ``[begin, last_frame]``.

    Plain floats (float64): a clip has a few dozen times, where tensor operations cost more than the maths.
    """
    times = [begin + (start + i / fps) + _EPS for i in range(num_frames)]
    span = end - begin
    if pad == "loop" and span > 0:
        times = [begin + (t - begin) % span for t in times]
    top = max(begin, last_frame)
    return [min(max(t, begin), top) for t in times]


def read_clip(path: str | os.PathLike, start: float | Callable[[float], float], num_frames: int, fps: float,
              **kwargs) -> Clip:
    """Decode one clip; ``start`` may be a function of the video's duration (one file open).

    Keyword arguments are those of :func:`read_clips`.
    """
    starts = (lambda duration: [start(duration)]) if callable(start) else [start]
    return read_clips(path, starts, num_frames, fps, **kwargs)[0]


def read_clips(
    path: str | os.PathLike,
    starts: Sequence[float] | Callable[[float], Sequence[float]],
    num_frames: int,
    fps: float,
    *,
    size: int | tuple[int, int] | None = None,
    audio_rate: int | None = 16000,
    audio_seconds: float | None = None,
    pad: Literal["repeat", "loop"] = "repeat",
    seek_mode: Literal["exact", "approximate"] = "exact",
    audio_overrun: Literal["zeros", "shift"] = "zeros",
) -> list[Clip]:
    """Decode several clips of one file with a single open (see the module doc).

    ``starts`` are seconds from the first frame, or a function ``duration -> starts`` (e.g. a sampler
    from :mod:`ssl_video.data.sampling`). ``size``: ``int`` = short side, ``(H, W)`` = exact, ``None`` =
    native. ``audio_rate=None`` skips audio (empty tensors). ``audio_seconds=None`` = the clip's span.
    ``audio_overrun``: the part of an audio window outside the audio stream is silence (``"zeros"``), or the
    window moves back inside the stream (``"shift"``; see :func:`read_audio`).
    """
    path = str(path)
    _check_file(path)
    if num_frames < 1 or fps <= 0:
        raise ValueError("num_frames must be >= 1 and fps > 0")
    # "exact" starts from the container's own index (no scan of the file) and keeps the result only when
    # every decoded frame is the one on screen at its requested time; otherwise it scans the file.
    starts = _once_per_duration(starts)
    try:
        bounds, all_times, decoded = _decode_clips(path, "approximate", starts, num_frames, fps, pad)
    except MediaError:
        if seek_mode != "exact":
            raise
        decoded = None
    if seek_mode == "exact" and (decoded is None or not _frame_exact(decoded, all_times)):
        bounds, all_times, decoded = _decode_clips(path, "exact", starts, num_frames, fps, pad)
    if not all_times:
        return []
    begin, duration, starts = bounds
    frames = decoded[0]
    frames = resize_frames(frames, target_size(frames.shape[-2], frames.shape[-1], size))
    clip_span = num_frames / fps
    seconds = clip_span if audio_seconds is None else float(audio_seconds)
    audio_decoder = _audio_decoder(path, audio_rate) if audio_rate is not None else None
    clips = []
    for k, (s, times) in enumerate(zip(starts, all_times)):
        audio_start = float(s) + clip_span / 2 - seconds / 2
        if audio_rate is None:
            audio, has_audio = torch.zeros(0), False
        else:
            audio, has_audio, at = _read_window(audio_decoder, path, begin + audio_start, seconds, audio_rate,
                                                audio_overrun)
            audio_start = at - begin
        frame_times = torch.tensor(times, dtype=torch.float64) - _EPS
        clips.append(Clip(video=frames[k * num_frames:(k + 1) * num_frames], audio=audio, has_audio=has_audio,
                          start=float(s), frame_times=frame_times, audio_start=audio_start,
                          duration=duration))
    return clips


def _once_per_duration(starts):
    """``starts`` itself, or the function memoised per duration (a random sampler draws once per file)."""
    if not callable(starts):
        return starts
    drawn: dict[float, list[float]] = {}

    def memo(duration: float) -> list[float]:
        if duration not in drawn:
            drawn[duration] = list(starts(duration))
        return drawn[duration]
    return memo


def _decode_clips(path: str, seek_mode: str, starts, num_frames: int, fps: float, pad: str):
    """Open the video with ``seek_mode``: ``(begin, duration, starts)``, each clip's times and the decoded
    ``(frames, pts, durations)`` (None when there is no clip)."""
    decoder = _video_decoder(path, seek_mode)
    begin, end, n, src_fps = _stream_bounds(decoder.metadata)
    if n <= 0 or end <= begin:
        raise MediaError(path, "video stream has no frames")
    duration = end - begin
    if callable(starts):
        starts = starts(duration)
    # the last frame's presentation time: the stream's end minus one source frame
    last_frame = max(begin, end - (1.0 / src_fps if src_fps else 0.0))
    all_times = [clip_times(float(s), num_frames, fps, begin, end, last_frame, pad) for s in starts]
    decoded = _decode_frames(decoder, path, [t for times in all_times for t in times]) if all_times else None
    return (begin, duration, list(starts)), all_times, decoded


def _frame_exact(decoded, all_times: list[list[float]]) -> bool:
    """Whether each decoded frame is on screen at its requested time (``pts <= t < pts + duration``)."""
    if decoded is None:
        return True
    _, pts, length = decoded
    if pts is None:
        return False
    times = [t for clip in all_times for t in clip]
    return all(p <= t + 1e-9 and (t < p + d or d <= 0) for t, p, d in zip(times, pts.tolist(), length.tolist()))


def _decode_frames(decoder, path: str, times: list[float]):
    """Frames on screen at ``times`` (T x C x H x W uint8), their pts and durations (s; None when repaired).

    A truncated file's index can promise frames its data cannot deliver: then each time that fails
    repeats the nearest earlier frame that decoded (or the first good one); no good frame is an error.
    """
    try:
        batch = decoder.get_frames_played_at(seconds=times)
        return batch.data, batch.pts_seconds, batch.duration_seconds
    except Exception as exc:
        first_error = exc
    frames: list[torch.Tensor | None] = []
    for t in times:
        try:
            frames.append(decoder.get_frame_played_at(t).data)
        except Exception:
            frames.append(None)
    good = [f for f in frames if f is not None]
    if not good:
        raise MediaError(path, f"cannot decode frames: {_one_line(first_error)}")
    previous = good[0]
    for i, frame in enumerate(frames):
        previous = frame if frame is not None else previous
        frames[i] = previous
    return torch.stack(frames), None, None


def read_audio(path: str | os.PathLike, start: float, seconds: float, sample_rate: int,
               overrun: Literal["zeros", "shift"] = "zeros") -> tuple[torch.Tensor, bool]:
    """Mono audio samples for ``[start, start + seconds)`` (absolute seconds) at ``sample_rate``.

    Returns ``(samples, has_audio)``; ``samples`` always has ``round(seconds * sample_rate)`` values.
    ``overrun="zeros"``: zeros where the window leaves the stream. ``"shift"`` (the official STiCA audio,
    GDT ``get_spec``): a window that runs past the stream's end is moved back to end with it (and one before
    its start, forward); a stream shorter than the window gives all of it, then zeros. A file without audio
    gives zeros either way.
    """
    path = str(path)
    _check_file(path)
    samples, has_audio, _ = _read_window(_audio_decoder(path, sample_rate), path, start, seconds, sample_rate,
                                         overrun)
    return samples, has_audio


def _read_window(decoder, path: str, start: float, seconds: float, sample_rate: int,
                 overrun: str = "zeros") -> tuple[torch.Tensor, bool, float]:
    """``(samples, has_audio, start)``: the window of :func:`read_audio` and where it was read from."""
    if overrun not in ("zeros", "shift"):
        raise ValueError(f"audio overrun must be 'zeros' or 'shift', got {overrun!r}")
    length = int(round(seconds * sample_rate))
    out = torch.zeros(length, dtype=torch.float32)
    if decoder is None:
        return out, False, start
    meta = decoder.metadata
    a_begin = float(meta.begin_stream_seconds or 0.0)
    a_end = a_begin + float(meta.duration_seconds) if meta.duration_seconds is not None else math.inf
    if overrun == "shift":
        start = max(a_begin, min(start, a_end - seconds))
    lo, hi = max(start, a_begin), min(start + seconds, a_end)
    if hi - lo <= 1.0 / sample_rate:
        return out, True, start
    try:
        samples = decoder.get_samples_played_in_range(lo, hi)
    except Exception as exc:
        raise MediaError(path, f"cannot decode audio: {_one_line(exc)}") from None
    data = samples.data
    if data.dim() == 2:  # the decoder already mixes to one channel: take it (a mean would copy)
        data = data[0] if data.shape[0] == 1 else data.mean(dim=0)
    offset = int(round((float(samples.pts_seconds) - start) * sample_rate))
    src_lo, dst_lo = max(0, -offset), max(0, offset)
    count = min(length - dst_lo, data.numel() - src_lo)
    if count > 0:
        out[dst_lo:dst_lo + count] = data[src_lo:src_lo + count].float()
    return out, True, start
