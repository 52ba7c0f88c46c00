"""CoST: collaborative spatiotemporal convolution (Li et al., CVPR 2019) and CoST-ResNets.

A CoST layer holds ONE 3x3 kernel and applies it three times as a 3-D convolution: on the H-W view
(kernel 1x3x3), the T-W view (3x1x3) and the T-H view (3x3x1). The three outputs are summed per output
channel with softmax coefficients over the views:

* CoST(a): the coefficients are free parameters (``view_logits``, one row of 3 per channel);
* CoST(b): they are predicted from the input: each view's output is max-pooled globally, a channel
  mixing layer (C -> C, shared by the views) and a view mixing layer (3 -> 3) give the logits.

So a CoST layer has the weights of a 2-D 3x3 conv (plus 3C for (a) or C^2 + 9 for (b)), and a CoST-ResNet
stays close to the 2-D ResNet it is built from. CoST layers replace the 3x3 conv of the bottlenecks the
official pattern names (``COST_BLOCKS``, from hikvision-research/cost ``configs/_base_/models/*.py``); the
other blocks keep 1x3x3 (per-frame) convs. ``block_pattern="i3d"`` keeps MMAction2's generic I3D pattern
for R50 instead. Official behaviour followed (hikvision-research/cost ``cost/models/common/conv_cost.py``,
``cost/models/backbones/resnet3d_cost.py`` and MMAction2's ``ResNet3d``): CoST(a) logits start at
(0.7, -0.7, -0.7), i.e. 67% / 16.5% / 16.5% with the spatial view favoured; after ``layer1`` a (2, 1, 1)
max-pool with stride 2 (no padding) halves the frames. See docs/FIDELITY.md, section CoST. Parameter names follow
torchvision's 2-D ResNets (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), and a CoST kernel has exactly the
shape of the 2-D kernel it replaces.

:func:`view_contributions` reads the mean coefficient of each view per layer: the share of spatial
(H-W) and temporal (T-W, T-H) features, the paper's interpretability analysis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_video.errors import UserError
from ssl_video.models.registry import Encoder, check_width, register_encoder, scaled_channels
from ssl_video.models.video import init_resnet_weights

__all__ = [
    "VIEW_NAMES", "CoSTConv", "CoSTResNet", "cost_layers", "view_contributions",
    "cost_r18", "cost_r50", "cost_r101", "COST_BLOCKS", "COST_INIT_LOGITS",
]

VIEW_NAMES = ("H-W", "T-W", "T-H")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# which blocks of each stage hold a CoST layer (1) or a per-frame 1x3x3 conv (0). R50 / R101: the official
# `inflate` of hikvision-research/cost configs/_base_/models/{i3d_r50_8f,costb_r101_8f}.py; "cost_r50:i3d":
# MMAction2's generic I3D-R50 pattern (the one used here before); R18 has no official model (every other block)
COST_BLOCKS = {
    "cost_r18": ((1, 0), (1, 0), (1, 0), (0, 1)),
    "cost_r50": ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (1, 0, 1)),
    "cost_r50:i3d": ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
    "cost_r101": ((0, 1, 0), (1, 0, 1, 0), (1, 0) * 11 + (1,), (0, 1, 0)),
}
# CoST(a) initial view logits (H-W, T-W, T-H): softmax -> 0.670 / 0.165 / 0.165 (official CoSTa.init_weights)
COST_INIT_LOGITS = (0.7, -0.7, -0.7)


class CoSTConv(nn.Module):
    """A shared 3x3 kernel on the H-W, T-W and T-H views, fused by softmax view coefficients."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, variant: str = "b"):
        super().__init__()
        if variant not in ("a", "b"):
            raise UserError(f"cost_variant must be 'a' (free coefficients) or 'b' (predicted), got {variant!r}")
        self.variant = variant
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        if variant == "a":
            # the spatial view starts favoured: softmax(0.7, -0.7, -0.7) = 67% / 16.5% / 16.5%
            self.view_logits = nn.Parameter(torch.tensor(COST_INIT_LOGITS).repeat(out_channels, 1))
        else:
            self.channel_mix = nn.Linear(out_channels, out_channels, bias=False)
            self.view_mix = nn.Linear(3, 3, bias=False)
            nn.init.normal_(self.channel_mix.weight, std=0.01)
            nn.init.normal_(self.view_mix.weight, std=0.01)
        self.keep_coefficients = False  # when True, forward stores the batch-mean coefficients (C x 3)
        self.kept_coefficients: torch.Tensor | None = None

    def view_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stride = (1, self.stride, self.stride)
        w = self.weight
        hw = F.conv3d(x, w.unsqueeze(2), stride=stride, padding=(0, 1, 1))
        tw = F.conv3d(x, w.unsqueeze(3), stride=stride, padding=(1, 0, 1))
        th = F.conv3d(x, w.unsqueeze(4), stride=stride, padding=(1, 1, 0))
        return hw, tw, th

    def coefficients(self, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Softmax view coefficients, ``N x C x 3`` (CoST(b)) or ``1 x C x 3`` (CoST(a))."""
        if self.variant == "a":
            return torch.softmax(self.view_logits, dim=-1).unsqueeze(0)
        pooled = torch.stack([v.amax(dim=(2, 3, 4)) for v in views], dim=1)  # N x 3 x C
        logits = self.view_mix(self.channel_mix(pooled).transpose(1, 2))  # N x C x 3
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = self.view_outputs(x)
        alpha = self.coefficients(views)
        if self.keep_coefficients:
            self.kept_coefficients = alpha.detach().mean(dim=0)
        alpha = alpha[:, :, :, None, None, None]
        return views[0] * alpha[:, :, 0] + views[1] * alpha[:, :, 1] + views[2] * alpha[:, :, 2]

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, stride={self.stride}, variant={self.variant!r}"


def frame_conv3x3(in_channels: int, out_channels: int, stride: int) -> nn.Conv3d:
    """A 2-D 3x3 conv applied to each frame (kernel 1x3x3)."""
    return nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                     bias=False)


def conv3x3(in_channels: int, out_channels: int, stride: int, cost: bool, variant: str) -> nn.Module:
    if cost:
        return CoSTConv(in_channels, out_channels, stride, variant)
    return frame_conv3x3(in_channels, out_channels, stride)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
        nn.BatchNorm3d(out_channels),
    )


class CoSTBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, cost: bool, variant: str):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride, cost, variant)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = frame_conv3x3(planes, planes, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class CoSTBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, cost: bool, variant: str):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3(planes, planes, stride, cost, variant)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class CoSTResNet(Encoder):
    """A 2-D ResNet whose alternate blocks hold CoST layers.

    Stem: 1x7x7 conv (stride 2) and 1x3x3 max-pool (stride 2) per frame; after ``layer1`` a 2x1x1 temporal
    max-pool (stride 2) halves the frames (MMAction2's ``pool2``); ``layer2``-``layer4`` halve the spatial
    size (output stride 32 in space, 2 in time). Needs at least 2 frames.
    """

    def __init__(self, block: type[nn.Module], pattern: tuple[tuple[int, ...], ...], variant: str = "b",
                 width: float = 1.0):
        super().__init__()
        width = check_width(width)
        if variant not in ("a", "b"):
            raise UserError(f"cost_variant must be 'a' (free coefficients) or 'b' (predicted), got {variant!r}")
        self.variant = variant
        stem = scaled_channels(64, width)
        self.conv1 = nn.Conv3d(3, stem, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.temporal_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        in_channels = stem
        for index, (stage, planes) in enumerate(zip(pattern, (64, 128, 256, 512), strict=True)):
            planes = scaled_channels(planes, width)
            blocks = []
            for position, cost in enumerate(stage):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(in_channels, planes, stride, bool(cost), variant))
                in_channels = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.temporal_pool(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))


_COST_INPUT = dict(
    frames=8, fps=3.75, crop_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    source="CoST (Li et al., CVPR 2019) on a 2-D ResNet; input defaults chosen here: 8 frames one every 8th "
           "of 30 fps video, resize short side 256, crop 224, ImageNet mean/std",
)


@register_encoder(modality="video", **_COST_INPUT)
def cost_r18(width: float = 1.0, cost_variant: str = "b") -> CoSTResNet:
    """CoST-ResNet-18: CoST layers in alternate basic blocks, 512-d; cost_variant 'a' or 'b'."""
    return CoSTResNet(CoSTBasicBlock, COST_BLOCKS["cost_r18"], variant=cost_variant, width=width)


@register_encoder(modality="video", **_COST_INPUT)
def cost_r50(width: float = 1.0, cost_variant: str = "b", block_pattern: str = "official") -> CoSTResNet:
    """CoST-ResNet-50: CoST layers in 8 bottlenecks (official pattern), 2048-d; cost_variant 'a' or 'b'."""
    if block_pattern not in ("official", "i3d"):
        raise UserError(f"block_pattern must be 'official' (hikvision-research/cost) or 'i3d' (MMAction2's I3D-R50), "
                        f"got {block_pattern!r}")
    key = "cost_r50" if block_pattern == "official" else "cost_r50:i3d"
    return CoSTResNet(CoSTBottleneck, COST_BLOCKS[key], variant=cost_variant, width=width)


@register_encoder(modality="video", **_COST_INPUT)
def cost_r101(width: float = 1.0, cost_variant: str = "b") -> CoSTResNet:
    """CoST-ResNet-101: CoST layers in 16 bottlenecks (official pattern), 2048-d; cost_variant 'a' or 'b'."""
    return CoSTResNet(CoSTBottleneck, COST_BLOCKS["cost_r101"], variant=cost_variant, width=width)


def cost_layers(encoder: nn.Module) -> list[tuple[str, CoSTConv]]:
    """``(name, layer)`` of every CoST layer, in network order."""
    return [(name, module) for name, module in encoder.named_modules() if isinstance(module, CoSTConv)]


def view_contributions(encoder: nn.Module, clips: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean softmax coefficient of each view (H-W, T-W, T-H) per CoST layer: ``{layer name: tensor(3)}``.

    CoST(a) coefficients are parameters, so ``clips`` is not needed. CoST(b) coefficients depend on the input:
    pass ``clips`` (``B x 3 x T x H x W``); the coefficients are averaged over the clips and the channels.
    Each row sums to 1.
    """
    layers = cost_layers(encoder)
    if not layers:
        raise UserError("this encoder has no CoST layers (view contributions exist only for the cost_* encoders)")
    if clips is None:
        if any(layer.variant == "b" for _, layer in layers):
            raise UserError("CoST(b) view coefficients depend on the input: pass clips to view_contributions")
        return {name: torch.softmax(layer.view_logits.detach(), dim=-1).mean(dim=0) for name, layer in layers}
    was_training = encoder.training
    encoder.eval()
    for _, layer in layers:
        layer.keep_coefficients = True
    try:
        with torch.no_grad():
            getattr(encoder, "forward_features", encoder)(clips)
        return {name: layer.kept_coefficients.mean(dim=0) for name, layer in layers}
    finally:
        for _, layer in layers:
            layer.keep_coefficients = False
            layer.kept_coefficients = None
        encoder.train(was_training)
