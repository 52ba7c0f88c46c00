"""Video encoders: R(2+1)D-18/34, R3D-18, MC3-18 and S3D.

Parameter names and shapes follow ``torchvision.models.video`` exactly (its classifier excepted), so a
state dict moves between these encoders and torchvision's models unchanged; R(2+1)D-34 uses the same
layout with 3-4-6-3 blocks (torchvision's ``VideoResNet`` builds it, as the TSP code does). ``width``
scales every channel count for tiny CPU variants; only ``width=1`` matches torchvision.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ssl_video.errors import UserError
from ssl_video.models.registry import Encoder, check_width, register_encoder, scaled_channels

__all__ = ["VideoResNet", "S3D", "r2plus1d_18", "r2plus1d_34", "r3d_18", "mc3_18", "s3d"]

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's video presets (also used by TSP)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
STICA_MEAN = (0.45, 0.45, 0.45)
STICA_STD = (0.225, 0.225, 0.225)

# conv kinds: "3d" full 3x3x3, "2+1d" 1x3x3 then 3x1x1, "2d" 1x3x3 only (no temporal extent)


def separable_mid_channels(in_channels: int, out_channels: int) -> int:
    """Hidden channels of a (2+1)D conv so that it has about as many weights as a 3x3x3 conv."""
    return (in_channels * out_channels * 27) // (in_channels * 9 + 3 * out_channels)


def spacetime_conv(kind: str, in_channels: int, out_channels: int, mid_channels: int, stride: int) -> nn.Module:
    if kind == "3d":
        return nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                         bias=False)
    if kind == "2+1d":
        return nn.Sequential(
            nn.Conv3d(in_channels, mid_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                      bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )
    raise ValueError(f"unknown conv kind {kind!r}")


class VideoBasicBlock(nn.Module):
    """Residual block of two space-time convs (``conv1``, ``conv2``) with an optional 1x1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kind: str, stride: int = 1,
                 separable_mid: str = "block"):
        super().__init__()
        # "block" (torchvision): one hidden width for both convs, from the block's input and output widths;
        # "conv" (IG65M / TSP R(2+1)D-34): each conv's hidden width from its own input and output widths
        mid = separable_mid_channels(in_channels, out_channels)
        mid2 = separable_mid_channels(out_channels, out_channels) if separable_mid == "conv" else mid
        self.conv1 = nn.Sequential(
            spacetime_conv(kind, in_channels, out_channels, mid, stride),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            spacetime_conv(kind, out_channels, out_channels, mid2, 1), nn.BatchNorm3d(out_channels)
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            shortcut_stride = (1, stride, stride) if kind == "2d" else (stride, stride, stride)
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=shortcut_stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


def frame_differences(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """``B x 3 x T x H x W`` -> ``B x 6 x T x H x W``: the frames and their forward differences
    ``gain * (x[t + 1] - x[t])`` (zero at the last step), which expose motion against a static background."""
    diff = torch.zeros_like(x)
    torch.sub(x[:, :, 1:], x[:, :, :-1], out=diff[:, :, :-1])
    if gain != 1.0:
        diff.mul_(gain)
    return torch.cat([x, diff], dim=1)


def video_stem(kind: str, out_channels: int, width: float, in_channels: int = 3) -> nn.Sequential:
    if kind == "2+1d":
        mid = scaled_channels(45, width)
        return nn.Sequential(
            nn.Conv3d(in_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, out_channels, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class VideoResNet(Encoder):
    """A 3-D ResNet of basic blocks: ``stem``, ``layer1`` .. ``layer4`` (spatial stride 16 after the stem).

    ``frame_diff``: the stem also sees the forward frame differences (6 input channels; the input
    contract stays RGB). Not in torchvision's models; useful when motion is small against a static scene.
    A number instead of ``true`` is a gain on the differences: a small moving object's differences are
    about ten times smaller than the frames' spread of colours, so at initialisation the stem's features
    follow colour; a gain of a few lets motion through (see ``recipes/stica_tiny_synthetic.yaml``).
    ``bn_eps`` / ``bn_momentum``: every BatchNorm's settings (torchvision: 1e-5 / 0.1; the IG65M R(2+1)D-34
    that TSP starts from: 1e-3 / 0.9, HumamAlwassel/TSP ``models/backbone.py``). ``separable_mid``: hidden
    width of a block's second (2+1)D conv, ``"block"`` (torchvision) or ``"conv"`` (IG65M / TSP R(2+1)D-34,
    which differs in the first block of layers 2-4).
    """

    def __init__(self, blocks: tuple[int, int, int, int], conv_kinds: tuple[str, str, str, str], stem: str,
                 width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 separable_mid: str = "block", layer_strides: tuple[int, int, int, int] = (1, 2, 2, 2)):
        super().__init__()
        width = check_width(width)
        layer_strides = tuple(layer_strides)
        if len(layer_strides) != 4 or not all(isinstance(v, int) and v in (1, 2) for v in layer_strides):
            raise UserError(f"layer_strides must be 4 strides of 1 or 2 (layers 1-4), got {layer_strides!r}")
        if separable_mid not in ("block", "conv"):
            raise UserError(f"separable_mid must be 'block' (torchvision) or 'conv' (IG65M/TSP), "
                            f"got {separable_mid!r}")
        for key, value in (("bn_eps", bn_eps), ("bn_momentum", bn_momentum)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise UserError(f"{key} must be a number in (0, 1], got {value!r}")
        if isinstance(frame_diff, bool) or frame_diff is None:
            gain = 1.0 if frame_diff else 0.0
        elif isinstance(frame_diff, (int, float)) and frame_diff >= 0:
            gain = float(frame_diff)
        else:
            raise UserError(f"frame_diff must be true, false or a gain >= 0, got {frame_diff!r}")
        self.frame_diff_gain = gain
        channels = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.stem = video_stem(stem, channels[0], width, in_channels=6 if self.frame_diff else 3)
        in_channels = channels[0]
        for index, (count, kind, out_channels) in enumerate(zip(blocks, conv_kinds, channels, strict=True)):
            stride = layer_strides[index]
            layer = []
            for block in range(count):
                layer.append(VideoBasicBlock(in_channels, out_channels, kind, stride if block == 0 else 1,
                                             separable_mid))
                in_channels = out_channels
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        init_resnet_weights(self)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.eps, module.momentum = float(bn_eps), float(bn_momentum)

    @property
    def frame_diff(self) -> bool:
        return self.frame_diff_gain > 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(frame_differences(x, self.frame_diff_gain) if self.frame_diff else x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def init_resnet_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


_RESNET_VIDEO_INPUT = dict(fps=15.0, crop_size=112, resize_size=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD)


@register_encoder(
    modality="video", frames=30, fps=30.0, crop_size=112, resize_size=(128, 171), mean=STICA_MEAN, std=STICA_STD,
    source="STiCA (Patrick, Asano et al. 2021), official code facebookresearch/GDT: 30 frames at 30 fps, 112x112",
)
def r2plus1d_18(width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                separable_mid: str = "block", layer_strides: tuple[int, int, int, int] = (1, 2, 2, 2)) -> VideoResNet:
    """R(2+1)D-18: (2+1)D basic blocks 2-2-2-2, 512-d (the STiCA video encoder).

    ``layer_strides``: the space-time stride of layers 1-4 (default 1, 2, 2, 2: the last map is 1/16 of the
    frame after the stem's spatial 2 and 1/8 of the clip); a 1 keeps a larger last map for Feature Crop.
    """
    return VideoResNet((2, 2, 2, 2), ("2+1d",) * 4, stem="2+1d", width=width, frame_diff=frame_diff, bn_eps=bn_eps,
                       bn_momentum=bn_momentum, separable_mid=separable_mid, layer_strides=layer_strides)


@register_encoder(
    modality="video", frames=16, fps=16.0, crop_size=112, resize_size=(128, 171), mean=STICA_MEAN, std=STICA_STD,
    source="R(2+1)D-10 (Tran et al. 2018, 'A Closer Look at Spatiotemporal Convolutions'): one block per stage",
)
def r2plus1d_10(width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                layer_strides: tuple[int, int, int, int] = (1, 2, 2, 2)) -> VideoResNet:
    """R(2+1)D-10: (2+1)D basic blocks 1-1-1-1, 512-d; half the depth of R(2+1)D-18 (CPU-sized runs)."""
    return VideoResNet((1, 1, 1, 1), ("2+1d",) * 4, stem="2+1d", width=width, frame_diff=frame_diff, bn_eps=bn_eps,
                       bn_momentum=bn_momentum, layer_strides=layer_strides)


@register_encoder(
    modality="video", frames=16, **_RESNET_VIDEO_INPUT,
    source="TSP (Alwassel et al. 2021), official code HumamAlwassel/TSP: 16 frames at 15 fps, "
           "resize 128x171, crop 112",
)
def r2plus1d_34(width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                separable_mid: str = "block") -> VideoResNet:
    """R(2+1)D-34: (2+1)D basic blocks 3-4-6-3, 512-d (the TSP encoder; its published weights need
    bn_eps=0.001, bn_momentum=0.9, separable_mid='conv', which `ssl-video import tsp` records)."""
    return VideoResNet((3, 4, 6, 3), ("2+1d",) * 4, stem="2+1d", width=width, frame_diff=frame_diff, bn_eps=bn_eps,
                       bn_momentum=bn_momentum, separable_mid=separable_mid)


@register_encoder(
    modality="video", frames=16, **_RESNET_VIDEO_INPUT,
    source="torchvision.models.video preset (16 frames at 15 fps, resize 128x171, crop 112); also a TSP backbone",
)
def r3d_18(width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
           layer_strides: tuple[int, int, int, int] = (1, 2, 2, 2)) -> VideoResNet:
    """R3D-18: 3x3x3 basic blocks 2-2-2-2, 512-d (``layer_strides`` as for :func:`r2plus1d_18`)."""
    return VideoResNet((2, 2, 2, 2), ("3d",) * 4, stem="3d", width=width, frame_diff=frame_diff, bn_eps=bn_eps,
                       bn_momentum=bn_momentum, layer_strides=layer_strides)


@register_encoder(
    modality="video", frames=16, **_RESNET_VIDEO_INPUT,
    source="torchvision.models.video preset (16 frames at 15 fps, resize 128x171, crop 112)",
)
def mc3_18(width: float = 1.0, frame_diff: bool | float = False, bn_eps: float = 1e-5,
           bn_momentum: float = 0.1) -> VideoResNet:
    """MC3-18: 3x3x3 convs in layer1, 1x3x3 (no temporal) in layers 2-4, 512-d."""
    return VideoResNet((2, 2, 2, 2), ("3d", "2d", "2d", "2d"), stem="3d", width=width, frame_diff=frame_diff,
                       bn_eps=bn_eps, bn_momentum=bn_momentum)


# ---------------------------------------------------------------------------------------------- S3D


def conv_bn_relu(in_channels: int, out_channels: int, kernel, stride=1, padding=0) -> nn.Sequential:
    """Conv3d (no bias), BatchNorm (eps 1e-3, momentum 1e-3 as in S3D) and ReLU, indexed 0/1/2."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(out_channels, eps=1e-3, momentum=1e-3),
        nn.ReLU(inplace=True),
    )


def separable_conv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """A k x k spatial conv then a k x 1 x 1 temporal conv, each with BatchNorm and ReLU."""
    return nn.Sequential(
        conv_bn_relu(in_channels, out_channels, (1, kernel, kernel), (1, stride, stride), (0, padding, padding)),
        conv_bn_relu(out_channels, out_channels, (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0)),
    )


class SeparableInception(nn.Module):
    """Inception block with separable 3x3x3 convs; output channels are the sum of the four branches."""

    def __init__(self, in_channels: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int):
        super().__init__()
        self.branch0 = conv_bn_relu(in_channels, b0, 1)
        self.branch1 = nn.Sequential(conv_bn_relu(in_channels, b1_mid, 1), separable_conv(b1_mid, b1, 3, 1, 1))
        self.branch2 = nn.Sequential(conv_bn_relu(in_channels, b2_mid, 1), separable_conv(b2_mid, b2, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(in_channels, b3, 1))
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


# (b0, b1_mid, b1, b2_mid, b2, b3) of the S3D inception blocks; "pool3"/"pool2" are max-pools in between
_S3D_BLOCKS = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "pool3",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "pool2",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


class S3D(Encoder):
    """S3D (Xie et al. 2018): separable 3-D inception network; ``features`` is its whole trunk, 1024-d."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        width = check_width(width)
        c = partial(scaled_channels, width=width)
        spatial_pool = partial(nn.MaxPool3d, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        layers: list[nn.Module] = [
            separable_conv(3, c(64), 7, 2, 3),
            spatial_pool(),
            conv_bn_relu(c(64), c(64), 1),
            separable_conv(c(64), c(192), 3, 1, 1),
            spatial_pool(),
        ]
        in_channels = c(192)
        for block in _S3D_BLOCKS:
            if block == "pool3":
                layers.append(nn.MaxPool3d(3, stride=2, padding=1))
            elif block == "pool2":
                layers.append(nn.MaxPool3d(2, stride=2))
            else:
                inception = SeparableInception(in_channels, *(c(n) for n in block))
                layers.append(inception)
                in_channels = inception.out_channels
        self.features = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_encoder(
    modality="video", frames=16, fps=15.0, crop_size=224, resize_size=(256, 256), mean=KINETICS_MEAN,
    std=KINETICS_STD,
    source="torchvision.models.video S3D preset (crop 224, resize 256x256, 15 fps); 16 frames chosen here",
)
def s3d(width: float = 1.0) -> S3D:
    """S3D: separable 3-D inception network, 1024-d (needs at least 8 frames and 32x32 input)."""
    return S3D(width=width)
