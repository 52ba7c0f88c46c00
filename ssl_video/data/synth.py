"""A synthetic audio-visual dataset in the UCF101 layout: the embedded default data.

Each video shows one object (a disc or a square) bouncing back and forth along a straight line
(a triangle-wave trajectory) over a textured background. The sound is a decaying tone burst that
starts at every turning point of the motion, so the rhythm and the onsets of the audio follow the
visual bounces. A class is a motion *axis* (the direction of the line) times a *bounce rate*:

* class ``c`` moves along axis ``c // 2`` of ``ceil(classes / 2)`` axes evenly spaced over 180
  degrees (0, 45, 90, 135 for the default 8 classes; +-9 degrees of jitter, at most a fifth of the
  spacing), at rate ``c % 2``: slow (a full back-and-forth cycle in 1 s) or fast (0.5 s), +-15 %;
* the pitch of the tone encodes the axis: 300, 600, 1200, 2400 Hz for 4 axes (an octave apart,
  +-10 %); with more axes the pitches are spaced geometrically below ``0.2 * sample_rate`` so the
  second harmonic stays below the Nyquist frequency and neighbouring pitch ranges never overlap.

Everything else is per-video nuisance drawn at random: phase, background colour plus a smooth
4x4 colour texture (peak-to-peak contrast 0.3) and static fine-grain noise (std 0.05), object colour,
shape, radius (3-5 px at 32x32), amplitude (3-5 px at 32x32, so at most about 2.5 px of motion per
frame at 16 fps), position, per-pixel temporal noise (std up to 0.03), audio gain (0.3-1) and white
noise (std up to 0.3). Geometry scales with ``min(H, W) / 32``, so larger frames keep the same look.
Neither the class (axis and rate) nor anything that identifies it can be read off a single frame:
a method has to use the motion or the sound.

:func:`render_video` renders one video in memory; :func:`generate_synthetic_dataset` writes a whole
dataset as mp4 files (h264 + AAC) with the official UCF101 split files.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ssl_video.console import track
from ssl_video.errors import UserError
from ssl_video.files import write_atomic, write_text

__all__ = [
    "class_names",
    "class_design",
    "generate_synthetic_dataset",
    "render_video",
    "split_groups",
    "video_seed",
]

# The numbers below are for a 32x32 frame; lengths scale with min(H, W) / 32.
BASE_PERIODS_S = (1.0, 0.5)  # full back-and-forth cycle: slow, fast (16 and 8 frames at 16 fps)
RATE_NAMES = ("Slow", "Fast")
PERIOD_JITTER = 0.15
ANGLE_JITTER_DEG = 9.0
LOWEST_PITCH_HZ = 300.0
PITCH_JITTER = 0.10
BURST_DECAY_S = 0.040
HARMONIC_GAIN = 0.5
GAIN_RANGE = (0.3, 1.0)
AUDIO_NOISE_MAX = 0.3
RADIUS_PX = (3.0, 5.0)
AMPLITUDE_PX = (3.0, 5.0)
CENTRE_OFFSET_PX = 2.0
TEXTURE_GRID = 4
TEXTURE_CONTRAST = 0.3
FINE_NOISE_STD = 0.05
TEMPORAL_NOISE_MAX = 0.03
MIN_COLOUR_DISTANCE = 0.35
TEST_GROUP_FRACTION = 0.28  # 7 of 25 groups in UCF101
MAX_GROUPS = 25
CLIPS_PER_GROUP = 4
NUM_SPLITS = 3


# ----------------------------------------------------------------------------- class design


def _num_axes(classes: int) -> int:
    return (classes + 1) // 2


def _axis_angles(classes: int) -> np.ndarray:
    n = _num_axes(classes)
    return np.arange(n) * (180.0 / n)


def _axis_pitches(classes: int, sample_rate: int) -> tuple[np.ndarray, float]:
    """Fundamental per axis (Hz) and the relative jitter that keeps neighbouring ranges apart."""
    n = _num_axes(classes)
    top = 0.2 * sample_rate  # top fundamental incl. jitter stays < 0.22 sr: 2nd harmonic < Nyquist
    low = min(LOWEST_PITCH_HZ, top / 2.0)
    if n == 1:
        return np.array([low]), PITCH_JITTER
    ratio = min(2.0, (top / low) ** (1.0 / (n - 1)))
    jitter = min(PITCH_JITTER, 0.45 * (ratio - 1.0) / (ratio + 1.0))  # (1+j)/(1-j) < ratio
    return low * ratio ** np.arange(n), jitter


def class_names(classes: int = 8) -> list[str]:
    """CamelCase names without underscores, in label order: ``Axis000Slow``, ``Axis000Fast``, ..."""
    _check_classes(classes)
    angles = _axis_angles(classes)
    names = [f"Axis{int(round(angles[c // 2])) % 180:03d}{RATE_NAMES[c % 2]}" for c in range(classes)]
    if len(set(names)) != len(names):  # only with more than 360 classes
        names = [f"Axis{c // 2:03d}{RATE_NAMES[c % 2]}" for c in range(classes)]
    return names


def class_design(classes: int = 8, sample_rate: int = 16000) -> list[dict[str, Any]]:
    """What defines each class: axis angle (degrees), cycle period (s) and tone pitch (Hz)."""
    _check_classes(classes)
    angles = _axis_angles(classes)
    pitches, pitch_jitter = _axis_pitches(classes, sample_rate)
    angle_jitter = min(ANGLE_JITTER_DEG, 0.2 * 180.0 / _num_axes(classes))
    return [
        {
            "class_index": c,
            "name": name,
            "axis_index": c // 2,
            "rate_index": c % 2,
            "angle_deg": float(angles[c // 2]),
            "angle_jitter_deg": float(angle_jitter),
            "period_s": BASE_PERIODS_S[c % 2],
            "period_jitter": PERIOD_JITTER,
            "pitch_hz": float(pitches[c // 2]),
            "pitch_jitter": float(pitch_jitter),
        }
        for c, name in enumerate(class_names(classes))
    ]


def video_seed(seed: int, class_index: int, index: int) -> np.random.SeedSequence:
    """The random stream of one video: depends only on (seed, class, index within the class)."""
    return np.random.SeedSequence([int(seed), int(class_index), int(index)])


# ----------------------------------------------------------------------------- rendering


def _resize_bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample an (h, w, C) grid to (height, width, C), corners aligned."""
    h, w = grid.shape[:2]
    ys = np.linspace(0.0, h - 1.0, height)
    xs = np.linspace(0.0, w - 1.0, width)
    y0 = np.clip(np.floor(ys).astype(int), 0, max(h - 2, 0))
    x0 = np.clip(np.floor(xs).astype(int), 0, max(w - 2, 0))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _triangle(u: np.ndarray) -> np.ndarray:
    """-1 at integer u, +1 at half-integer u, linear in between."""
    return 1.0 - 4.0 * np.abs(u - np.floor(u) - 0.5)


def render_video(
    class_index: int,
    classes: int = 8,
    rng: int | np.random.SeedSequence | np.random.Generator | None = 0,
    seconds: float = 4.0,
    fps: float = 16.0,
    size: tuple[int, int] = (32, 32),
    sample_rate: int = 16000,
    clean: bool = False,
    amplitude_px: tuple[float, float] = AMPLITUDE_PX,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one video of class ``class_index`` in memory.

    Returns ``frames`` (T x H x W x 3 uint8, T = round(seconds * fps), frame i at i / fps),
    ``audio`` (float32 mono in [-1, 1], round(seconds * sample_rate) samples) and ``info``, which
    holds the drawn parameters, ``turning_times`` (s, the visual turning points inside the video,
    where the tone bursts start) and ``positions`` (T x 2, the object centre as (x, y) in pixels).
    ``rng`` is a seed, a SeedSequence or a Generator (the Generator is advanced).
    ``clean=True`` leaves out the additive noise (pixel noise and audio white noise) and keeps every
    other drawn value identical, which makes the structure easy to inspect. ``amplitude_px``: the range of
    the motion amplitude (half the back-and-forth excursion) at 32 px, scaled with the frame size.
    """
    _check_classes(classes)
    amplitude_px = _check_amplitude(amplitude_px)
    if not 0 <= class_index < classes:
        raise UserError(f"class_index must be in [0, {classes}), got {class_index}")
    height, width = _check_size(size)
    if seconds <= 0 or fps <= 0 or sample_rate <= 0:
        raise UserError("seconds, fps and sample_rate must be positive")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    design = class_design(classes, sample_rate)[class_index]
    scale = min(height, width) / 32.0
    num_frames = max(1, int(round(seconds * fps)))
    num_samples = max(1, int(round(seconds * sample_rate)))

    # Every value is drawn in a fixed order whatever ``clean`` is, so clean and noisy renders match.
    angle = design["angle_deg"] + gen.uniform(-1.0, 1.0) * design["angle_jitter_deg"]
    period = design["period_s"] * (1.0 + gen.uniform(-1.0, 1.0) * PERIOD_JITTER)
    phase = gen.uniform(0.0, 1.0)
    pitch = design["pitch_hz"] * (1.0 + gen.uniform(-1.0, 1.0) * design["pitch_jitter"])
    gain = gen.uniform(*GAIN_RANGE)
    audio_noise_std = gen.uniform(0.0, AUDIO_NOISE_MAX)
    radius = gen.uniform(*RADIUS_PX) * scale
    amplitude = gen.uniform(*amplitude_px) * scale
    shape = "disc" if gen.random() < 0.5 else "square"
    background = gen.uniform(0.0, 1.0, 3)
    for _ in range(100):
        colour = gen.uniform(0.0, 1.0, 3)
        if np.linalg.norm(colour - background) >= MIN_COLOUR_DISTANCE:
            break
    texture = gen.uniform(-0.5, 0.5, (TEXTURE_GRID, TEXTURE_GRID, 3)) * TEXTURE_CONTRAST
    grain_h, grain_w = max(2, math.ceil(height / scale)), max(2, math.ceil(width / scale))
    grain = gen.normal(0.0, FINE_NOISE_STD, (grain_h, grain_w, 1))
    offset = gen.uniform(-1.0, 1.0, 2) * CENTRE_OFFSET_PX * scale
    temporal_noise_std = gen.uniform(0.0, TEMPORAL_NOISE_MAX)
    noise_seed = gen.integers(0, 2**63 - 1)

    # Trajectory: u = t / period + phase; turning points at half-integer u.
    direction = np.array([math.cos(math.radians(angle)), -math.sin(math.radians(angle))])  # (x, y down)
    reach = amplitude + radius + 1.0
    limit = np.maximum(np.array([width / 2.0, height / 2.0]) - reach, 0.0)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + np.clip(offset, -limit, limit)
    times = np.arange(num_frames) / fps
    along = amplitude * _triangle(times / period + phase)
    positions = centre[None] + along[:, None] * direction[None]
    k_first = math.floor(2.0 * (phase - BURST_DECAY_S * 10 / period))  # bursts still ringing at t=0
    k_last = math.ceil(2.0 * (seconds / period + phase))
    onsets = (np.arange(k_first, k_last + 1) / 2.0 - phase) * period
    onsets = onsets[onsets < seconds]
    turning_times = onsets[onsets >= 0.0]

    # Frames.
    noise_rng = np.random.default_rng(noise_seed)
    base = background[None, None] + _resize_bilinear(texture, height, width)
    if not clean:
        base = base + _resize_bilinear(grain, height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = np.empty((num_frames, height, width, 3), np.float32)
    for i, (px, py) in enumerate(positions):
        dx, dy = xs - px, ys - py
        dist = np.hypot(dx, dy) if shape == "disc" else np.maximum(np.abs(dx), np.abs(dy))
        alpha = np.clip(radius + 0.5 - dist, 0.0, 1.0)[..., None]  # one-pixel anti-aliased edge
        frames[i] = base * (1.0 - alpha) + colour[None, None] * alpha
    if not clean:
        frames += noise_rng.normal(0.0, temporal_noise_std, frames.shape).astype(np.float32)
    frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)

    # Audio: a decaying tone burst (fundamental + half-amplitude 2nd harmonic) at every turning point.
    t = np.arange(num_samples) / sample_rate
    audio = np.zeros(num_samples, np.float64)
    harmonic = HARMONIC_GAIN if 2.0 * pitch < 0.5 * sample_rate else 0.0
    norm = gain / (1.0 + harmonic)
    span = int(math.ceil(BURST_DECAY_S * 10 * sample_rate))
    for onset in onsets:
        first = max(0, int(math.ceil(onset * sample_rate)))
        stop = min(num_samples, first + span)
        if stop <= first:
            continue
        tau = t[first:stop] - onset
        wave = np.sin(2 * np.pi * pitch * tau) + harmonic * np.sin(4 * np.pi * pitch * tau)
        audio[first:stop] += norm * np.exp(-tau / BURST_DECAY_S) * wave
    if not clean:
        audio += noise_rng.normal(0.0, audio_noise_std, num_samples)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    info = {
        **design,
        "angle_deg": float(angle),
        "period_s": float(period),
        "phase": float(phase),
        "pitch_hz": float(pitch),
        "gain": float(gain),
        "audio_noise_std": float(audio_noise_std),
        "radius_px": float(radius),
        "amplitude_px": float(amplitude),
        "shape": shape,
        "background": background,
        "colour": colour,
        "temporal_noise_std": float(temporal_noise_std),
        "centre": centre,
        "positions": positions,
        "turning_times": turning_times,
        "frame_times": times,
    }
    return frames, audio, info


# ----------------------------------------------------------------------------- splits


def _group_sizes(videos_per_class: int) -> list[int]:
    groups = min(MAX_GROUPS, max(math.ceil(videos_per_class / CLIPS_PER_GROUP), min(videos_per_class, 4)))
    base, extra = divmod(videos_per_class, groups)
    return [base + (g < extra) for g in range(groups)]


def split_groups(num_groups: int) -> list[list[int]]:
    """Test groups (1-based) of each of the three splits; every other group is in train.

    With G groups, each split tests ``n = clamp(round(0.28 * G), 1, G - 1)`` consecutive groups:
    split s (0, 1, 2) tests groups ``s*n + 1 ... s*n + n`` (wrapping around after G). For
    G = 25 this is UCF101's rule (groups 1-7, 8-14, 15-21). The three test sets differ whenever
    G >= 3 and a group is never in train and test of the same split.
    """
    if num_groups < 2:
        raise UserError("a split needs at least two groups per class")
    n = min(max(1, round(TEST_GROUP_FRACTION * num_groups)), num_groups - 1)
    return [sorted((s * n + j) % num_groups + 1 for j in range(n)) for s in range(NUM_SPLITS)]


def _video_table(names: list[str], videos_per_class: int) -> list[dict[str, Any]]:
    """One row per video in a fixed order: class, index within the class, group, clip, file."""
    rows = []
    sizes = _group_sizes(videos_per_class)
    for c, name in enumerate(names):
        index = 0
        for g, count in enumerate(sizes, start=1):
            for clip in range(1, count + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{clip:02d}.mp4"
                rows.append({"path": rel, "class_index": c, "index": index, "group": g, "clip": clip})
                index += 1
    return rows


def _write_splits(list_dir: Path, names: list[str], rows: list[dict[str, Any]], num_groups: int) -> None:
    list_dir.mkdir(parents=True, exist_ok=True)
    write_text(list_dir / "classInd.txt", "".join(f"{c + 1} {n}\n" for c, n in enumerate(names)))
    for s, test in enumerate(split_groups(num_groups), start=1):
        test_set = set(test)
        train = [f"{r['path']} {r['class_index'] + 1}\n" for r in rows if r["group"] not in test_set]
        tests = [f"{r['path']}\n" for r in rows if r["group"] in test_set]
        write_text(list_dir / f"trainlist{s:02d}.txt", "".join(train))
        write_text(list_dir / f"testlist{s:02d}.txt", "".join(tests))


# ----------------------------------------------------------------------------- writing


def _render_and_write(job: dict[str, Any]) -> str:
    from ssl_video.data.video_writer import write_video

    frames, audio, _ = render_video(
        job["class_index"], job["classes"], video_seed(job["seed"], job["class_index"], job["index"]),
        job["seconds"], job["fps"], job["size"], job["sample_rate"], amplitude_px=job["amplitude_px"],
    )
    write_atomic(job["file"], lambda tmp: write_video(tmp, frames, job["fps"], audio if job["audio"] else None,
                                                      job["sample_rate"]))
    return job["file"]


def render_all(render, jobs: list[dict[str, Any]], workers: int, desc: str, progress: bool, chunksize: int = 1) -> None:
    """Run ``render`` on every job, in ``workers`` processes when more than one, counting videos as they finish."""
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in track(pool.map(render, jobs, chunksize=chunksize), len(jobs), desc, "video", progress):
                pass
    else:
        for _ in track(map(render, jobs), len(jobs), desc, "video", progress):
            pass


def generate_synthetic_dataset(
    out: str | Path,
    classes: int = 8,
    videos_per_class: int = 30,
    seconds: float = 4.0,
    fps: float = 16.0,
    size: tuple[int, int] = (32, 32),
    no_audio_fraction: float = 0.0,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int = 1,
    progress: bool = True,
    amplitude_px: tuple[float, float] = AMPLITUDE_PX,
) -> dict[str, Any]:
    """Write a synthetic audio-visual dataset under ``out`` in the official UCF101 layout.

    ``amplitude_px`` (at 32 px) sets how far the object moves; see :func:`render_video`.

    Files: ``out/UCF-101/<Class>/v_<Class>_gXX_cYY.mp4`` (h264 + AAC, ``size`` = (H, W), even);
    ``out/ucfTrainTestlist/classInd.txt`` (``1 Axis000Slow``, 1-based, in label order, which is
    not alphabetical: take labels from classInd), ``trainlist01..03.txt`` (``Class/file.mp4 label``)
    and ``testlist01..03.txt`` (``Class/file.mp4``); ``out/synth.json`` (the returned summary, the
    generator's parameters and one row per video).

    Groups: the videos of a class are cut into G consecutive groups ``g01..gG`` of
    ``c01..`` clips, G = min(25, max(ceil(videos_per_class / 4), min(videos_per_class, 4))).
    Splits as in UCF101: each split tests whole groups, the same group numbers for every class, so a
    group never straddles train and test; see :func:`split_groups` for which (about 28 %, at least one
    group, a different block of groups per split). ``videos_per_class`` must be at least 2.

    Video ``index`` of class ``c`` is rendered from ``video_seed(seed, c, index)``, so the output
    depends neither on ``workers`` nor on the order of writing. ``round(no_audio_fraction * N)`` of
    the N videos, picked by a permutation drawn from ``seed``, are written without an audio stream.
    Existing files with the same names are overwritten.
    """
    _check_classes(classes)
    size = _check_size(size)
    if videos_per_class < 2:
        raise UserError(f"videos_per_class must be at least 2 (train and test groups), got {videos_per_class}")
    if not 0.0 <= no_audio_fraction <= 1.0:
        raise UserError(f"no_audio_fraction must be in [0, 1], got {no_audio_fraction}")
    if seconds <= 0 or fps <= 0 or sample_rate <= 0:
        raise UserError("seconds, fps and sample_rate must be positive")
    out = Path(out)
    video_root, list_dir = out / "UCF-101", out / "ucfTrainTestlist"
    names = class_names(classes)
    rows = _video_table(names, videos_per_class)
    amplitude_px = _check_amplitude(amplitude_px)
    silent = round(no_audio_fraction * len(rows))
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0x51_1E_47])).permutation(len(rows))
    no_audio = set(perm[:silent].tolist())
    jobs = []
    for i, row in enumerate(rows):
        row["audio"] = i not in no_audio
        jobs.append({
            **row, "file": str(video_root / row["path"]), "classes": classes, "seed": seed,
            "seconds": seconds, "fps": fps, "size": size, "sample_rate": sample_rate,
            "amplitude_px": tuple(amplitude_px),
        })
    for name in names:
        (video_root / name).mkdir(parents=True, exist_ok=True)

    render_all(_render_and_write, jobs, workers, "synth videos", progress, chunksize=4)

    num_groups = len(_group_sizes(videos_per_class))
    _write_splits(list_dir, names, rows, num_groups)
    summary = {
        "out": str(out),
        "classes": classes,
        "class_names": names,
        "videos": len(rows),
        "videos_without_audio": silent,
        "seconds": float(seconds),
        "fps": float(fps),
        "size": list(size),
        "seed": int(seed),
        "sample_rate": int(sample_rate),
    }
    record = {
        **summary,
        "generator": "ssl_video.data.synth",
        "parameters": {
            "videos_per_class": videos_per_class,
            "no_audio_fraction": no_audio_fraction,
            "frames_per_video": max(1, int(round(seconds * fps))),
            "groups_per_class": num_groups,
            "test_groups": split_groups(num_groups),
            "class_design": class_design(classes, sample_rate),
            "nuisance": {
                "base_size_px": 32, "radius_px": RADIUS_PX, "amplitude_px": list(amplitude_px),
                "centre_offset_px": CENTRE_OFFSET_PX, "texture_grid": TEXTURE_GRID,
                "texture_contrast": TEXTURE_CONTRAST, "fine_noise_std": FINE_NOISE_STD,
                "temporal_noise_max": TEMPORAL_NOISE_MAX, "burst_decay_s": BURST_DECAY_S,
                "harmonic_gain": HARMONIC_GAIN, "gain_range": GAIN_RANGE, "audio_noise_max": AUDIO_NOISE_MAX,
            },
        },
        "video_list": [
            {k: r[k] for k in ("path", "class_index", "index", "group", "clip", "audio")} for r in rows
        ],
    }
    write_text(out / "synth.json", json.dumps(record, indent=1) + "\n")
    return summary


# ----------------------------------------------------------------------------- checks


def _check_amplitude(amplitude_px: Any) -> tuple[float, float]:
    low, high = (float(v) for v in amplitude_px)
    if not 0 < low <= high:
        raise UserError(f"amplitude_px must be a pair 0 < low <= high, got {tuple(amplitude_px)}")
    return low, high


def _check_classes(classes: int) -> None:
    if int(classes) != classes or classes < 1:
        raise UserError(f"classes must be a positive integer, got {classes}")


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    height, width = (int(v) for v in size)
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise UserError(f"size must be two even numbers (H, W) of at least 2 (h264), got {tuple(size)}")
    return height, width

