"""A STiCA method, an optimizer and a random batch for step benchmarks (not a benchmark itself)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_video.methods.stica import FeatureCropConfig, STiCA, StiCAConfig  # noqa: E402
from ssl_video.models.registry import create_encoder  # noqa: E402


def build_step(encoder: str, width: float, frames: int, size: int, batch: int, device: str,
               crops: FeatureCropConfig | None = None, audio_encoder: str = "audio_resnet9"
               ) -> tuple[STiCA, torch.optim.Optimizer, dict]:
    """``(method in training mode on device, AdamW, batch of two views + log-mel audio)``, seeded."""
    torch.manual_seed(0)
    cfg = StiCAConfig(video_encoder=encoder, audio_encoder=audio_encoder, embed_dim=128,
                      crops=crops or FeatureCropConfig())
    video = create_encoder(encoder, width=width, frames=frames, crop_size=size)
    audio = create_encoder(audio_encoder, width=width)
    method = STiCA(cfg, video_encoder=video, audio_encoder=audio).to(device).train()
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    n_mels, time_frames = audio.spec.input_shape()[-2:]
    data = {
        "video": torch.randn(batch, 2, 3, frames, size, size, device=device),
        "audio": torch.randn(batch, 1, n_mels, time_frames, device=device),
    }
    return method, optimizer, data


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
