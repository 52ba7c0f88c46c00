"""Clip decoding throughput: ssl_video's reader against two baselines, on the same generated files.

Each clip: 16 frames at the source frame rate starting at a random time, 112x112 RGB uint8, plus the
2 s of mono 16 kHz audio centred on it; every clip opens its file anew (as a dataset does).
  ours         ssl_video.data.media.read_clip (torchcodec, decoder-side resize, FFmpeg resampling)
  pyav_seek    PyAV: seek to the keyframe before the start, decode forward, swscale to 112x112,
               and the audio stream seeked and resampled with PyAV's resampler
  full_decode  decode every frame and all the audio of the file, then slice and resize (what older
               toolkits did with torchvision.io.read_video)
The methods run interleaved in rounds so machine noise hits them alike. The last line printed is one
JSON object: clips_per_s (ours), ratio_vs_pyav_seek, ratio_vs_full_decode, and the baselines' rates.

  python benchmarks/decode.py [--videos 6] [--seconds 10] [--clips 200] [--size 240 320] [--fps 25]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_video.data.media import read_clip  # noqa: E402
from ssl_video.data.synth import render_video  # noqa: E402
from ssl_video.data.video_writer import write_video  # noqa: E402

FRAMES, OUT, SR, AUDIO_S = 16, 112, 16000, 2.0


def make_videos(folder: Path, count: int, seconds: float, size: tuple[int, int], fps: float) -> list[Path]:
    paths = []
    for i in range(count):
        frames, audio, _ = render_video(i % 8, 8, rng=i, seconds=seconds, fps=fps, size=size, sample_rate=44100)
        # UCF101-like files: a keyframe every 12 frames, 44.1 kHz audio
        paths.append(write_video(folder / f"v{i}.mp4", frames, fps, audio, 44100, crf=23, gop=12))
    return paths


def ours(path: Path, start: float, fps: float):
    clip = read_clip(path, start, FRAMES, fps, size=(OUT, OUT), audio_rate=SR, audio_seconds=AUDIO_S)
    return clip.video, clip.audio


def _pyav_audio(container, start: float) -> np.ndarray:
    stream = container.streams.audio[0]
    lo = max(0.0, start + FRAMES / 2 / 25 - AUDIO_S / 2)
    container.seek(int(lo / stream.time_base), stream=stream)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
    chunks, first = [], None
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            if first is None:
                first = float(out.pts * out.time_base) if out.pts is not None else lo
            chunks.append(out.to_ndarray().reshape(-1))
        if frame.time is not None and frame.time > lo + AUDIO_S:
            break
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = int(round((lo - (first or lo)) * SR))
    return data[max(0, offset):max(0, offset) + int(AUDIO_S * SR)]


def pyav_seek(path: Path, start: float, fps: float):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        container.seek(int(start / stream.time_base), stream=stream)  # backward to a keyframe
        frames = []
        for frame in container.decode(stream):
            if frame.time + 1e-6 < start:
                continue
            frames.append(frame.to_ndarray(format="rgb24", width=OUT, height=OUT))
            if len(frames) == FRAMES:
                break
        audio = _pyav_audio(container, start)
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), torch.from_numpy(audio)


def full_decode(path: Path, start: float, fps: float):
    with av.open(str(path)) as container:
        video = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        audio = np.concatenate([o.to_ndarray().reshape(-1) for f in container.decode(audio=0)
                                for o in resampler.resample(f)])
    first = int(round(start * fps))
    clip = torch.from_numpy(video[first:first + FRAMES]).permute(0, 3, 1, 2)
    clip = F.interpolate(clip.float(), size=(OUT, OUT), mode="bilinear", antialias=True).round().byte()
    lo = int(round((start + FRAMES / 2 / fps - AUDIO_S / 2) * SR))
    return clip, torch.from_numpy(audio[max(0, lo):max(0, lo) + int(AUDIO_S * SR)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=200, help="clips per method (fewer: noisier ratios)")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320))
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = {"ours": ours, "pyav_seek": pyav_seek, "full_decode": full_decode}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        paths = make_videos(Path(tmp), args.videos, args.seconds, tuple(args.size), args.fps)
        print(f"wrote {len(paths)} videos ({args.seconds:g} s, {args.size[0]}x{args.size[1]}, {args.fps:g} fps) "
              f"in {time.time() - t0:.1f} s", file=sys.stderr)
        rng = random.Random(args.seed)
        span = FRAMES / args.fps
        jobs = [(rng.choice(paths), rng.uniform(0, args.seconds - span - 0.05)) for _ in range(args.clips)]
        for name, fn in methods.items():  # warm-up and a shape check
            video, audio = fn(*jobs[0], args.fps)
            assert video.shape == (FRAMES, 3, OUT, OUT) and audio.numel() == int(AUDIO_S * SR), (name, audio.shape)
        elapsed = dict.fromkeys(methods, 0.0)
        rounds = 5
        for r in range(rounds):  # interleave: each method does a fifth of the clips per round
            for name, fn in methods.items():
                part = jobs[r::rounds]
                start = time.perf_counter()
                for path, t in part:
                    fn(path, t, args.fps)
                elapsed[name] += time.perf_counter() - start
    rates = {name: args.clips / seconds for name, seconds in elapsed.items()}
    for name, rate in rates.items():
        print(f"{name:>12}: {rate:7.1f} clips/s", file=sys.stderr)
    print(json.dumps({
        "clips_per_s": round(rates["ours"], 2),
        "ratio_vs_pyav_seek": round(rates["ours"] / rates["pyav_seek"], 3),
        "ratio_vs_full_decode": round(rates["ours"] / rates["full_decode"], 3),
        "pyav_seek_clips_per_s": round(rates["pyav_seek"], 2),
        "full_decode_clips_per_s": round(rates["full_decode"], 2),
        "clip": {"frames": FRAMES, "size": OUT, "audio_seconds": AUDIO_S, "audio_rate": SR},
        "videos": {"count": args.videos, "seconds": args.seconds, "size": list(args.size), "fps": args.fps},
    }))


if __name__ == "__main__":
    main()
