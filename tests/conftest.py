"""Shared fixtures: media generated on the fly (PyAV writes, ssl_video decodes)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ssl_video.data.video_writer import write_video

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

BITS = 8  # frame index encoded as 8 horizontal black/white bands (robust to lossy coding)


def index_frames(n: int, height: int = 64, width: int = 48) -> np.ndarray:
    """Frames whose pixels encode their own index: band b is white when bit b of the index is set."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    band = height // BITS
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                frames[i, b * band:(b + 1) * band] = 255
    return frames


def decode_index(frames: torch.Tensor) -> list[int]:
    """Inverse of :func:`index_frames` for decoded ``T x C x H x W`` uint8 frames (any size)."""
    height = frames.shape[-2]
    out = []
    for frame in frames:
        gray = frame.float().mean(0)
        value = 0
        for b in range(BITS):
            lo, hi = int(b * height / BITS), int((b + 1) * height / BITS)
            centre = gray[lo + (hi - lo) // 4: hi - (hi - lo) // 4]
            if centre.mean() > 127:
                value |= 1 << b
        out.append(value)
    return out


def write_index_video(path, n: int, fps: float, audio=None, sample_rate: int = 16000, frame_times=None,
                      size=(64, 48)):
    return write_video(path, index_frames(n, *size), fps, audio=audio, sample_rate=sample_rate,
                       frame_times=frame_times, gop=12)


@pytest.fixture
def index_video(tmp_path):
    """A 3 s, 25 fps index-coded video with a 1 kHz tone starting at exactly 1.3 s (16 kHz audio)."""
    sr = 16000
    t = np.arange(int(3.0 * sr)) / sr
    audio = np.where(t >= 1.3, 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    return write_index_video(tmp_path / "index.mp4", 75, 25, audio=audio, sample_rate=sr)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node Slurm with accounting (tests/slurm/cluster.py) for this test session; SLURM_CONF points
    at it while it runs. Skips where the machine cannot run one (not root, packages not installed), except
    in CI (CI=true), where the slurm tests must run: there that is an error."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("slurm_test_cluster", Path(__file__).parent / "slurm" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reason = module.unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"no test Slurm cluster in CI (CI=true, so the slurm tests may not skip): {reason}",
                        pytrace=False)
        pytest.skip(f"no test Slurm cluster: {reason}")
    cluster = module.Cluster(tmp_path_factory.mktemp("slurm")).start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A tiny synthetic UCF-layout dataset (3 classes x 6 one-second 32x32 videos), one per test module."""
    from ssl_video.data.synth import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, classes=3, videos_per_class=6, seconds=1.0, size=(32, 32), progress=False)
    return root
