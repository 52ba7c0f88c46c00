"""Audio encoders: 2-D ResNets on log-mel spectrograms (``B x 1 x n_mels x time``).

The layout is the one audio-visual self-supervised work uses (GDT / STiCA): a 1-channel 7x7 stride-2 conv,
a 3x3 stride-2 max-pool, four stages of basic blocks (64-128-256-512 channels, stride 2 from the second
stage) and global average pooling to 512-d. Parameter names follow torchvision's 2-D ResNets, so
``audio_resnet18`` at ``width=1`` matches ``torchvision.models.resnet18`` except ``conv1`` (1 input channel)
and ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_video.models.registry import Encoder, check_width, register_encoder, scaled_channels
from ssl_video.models.video import init_resnet_weights

__all__ = ["AudioResNet", "audio_resnet9", "audio_resnet18"]


class BasicBlock2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class AudioResNet(Encoder):
    """2-D ResNet of basic blocks on a 1-channel spectrogram; feature map ``B x C x F' x T'`` (stride 32)."""

    def __init__(self, blocks: tuple[int, int, int, int], width: float = 1.0):
        super().__init__()
        width = check_width(width)
        channels = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(1, channels[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = channels[0]
        for index, (count, out_channels) in enumerate(zip(blocks, channels, strict=True)):
            layer = []
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                layer.append(BasicBlock2d(in_channels, out_channels, stride))
                in_channels = out_channels
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# STiCA's audio input (official code facebookresearch/GDT): 1 s of 24 kHz mono, 257 log filterbank bins,
# 20 ms window, 10 ms hop, n_fft 1024 -> 1 x 257 x 99 (python_speech_features logfbank; the centred
# log-mel of features="logmel" gives 101 frames)
STICA_AUDIO = dict(
    features="logfbank", sample_rate=24000, seconds=1.0, n_mels=257, n_fft=1024, win_seconds=0.02, hop_seconds=0.01, time_frames=99,
    source="STiCA (Patrick, Asano et al. 2021), official code facebookresearch/GDT: 1 s at 24 kHz, "
           "logfbank with 257 filters, 20 ms window, 10 ms hop, n_fft 1024 (1 x 257 x 99)",
)


@register_encoder(modality="audio", **STICA_AUDIO)
def audio_resnet9(width: float = 1.0) -> AudioResNet:
    """Audio ResNet-9: basic blocks 1-1-1-1 on log-mel, 512-d (the STiCA/GDT audio encoder)."""
    return AudioResNet((1, 1, 1, 1), width=width)


@register_encoder(modality="audio", **STICA_AUDIO)
def audio_resnet18(width: float = 1.0) -> AudioResNet:
    """Audio ResNet-18: basic blocks 2-2-2-2 on log-mel, 512-d."""
    return AudioResNet((2, 2, 2, 2), width=width)
