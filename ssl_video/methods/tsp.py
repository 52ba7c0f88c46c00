"""TSP: temporally-sensitive supervised pretraining on untrimmed videos (Alwassel et al. 2021, REFERENCE §4).

One training step, for a batch of clips sampled from labelled segments
(:class:`~ssl_video.data.untrimmed.SegmentClipDataset`):

1. every clip goes through the video encoder: local feature ``f`` (``B x F``);
2. action head ``Linear(F -> C)`` on foreground clips only: ``loss_action`` is the cross-entropy averaged
   over the clips whose ``label`` is a class (background clips have ``label = -1`` and add nothing, not
   even a gradient);
3. temporal-region head ``Linear(2F -> 2)`` on ``[f ⊕ g]`` where ``g`` is the clip's video's global
   feature (GVF: max over time of the initial encoder's clip features, precomputed and frozen):
   ``loss_region`` is the cross-entropy of foreground (1) vs background (0) over every clip; with
   ``global_feature: none`` the head sees ``f`` alone (``Linear(F -> 2)``);
4. ``loss = action_weight * loss_action + region_weight * loss_region``.

``region_weight = 0`` is the TAC baseline (action head only; no region head, no GVF needed).
Parameter groups: ``backbone`` (lr x ``backbone_lr_scale``) and ``heads`` (lr x 1); with ``freeze_stem`` the
encoder's stem is neither trained nor updates its BatchNorm statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_video.errors import ConfigError, UserError
from ssl_video.methods import register_method

__all__ = ["TSPConfig", "TSP", "build_tsp"]

SECTION = "tsp"


@dataclass
class TSPConfig:
    """The ``tsp:`` recipe section (method ``tsp``; defaults: the published ActivityNet settings)."""

    encoder: str = "r2plus1d_34"  # zoo name (random init) or an exported encoder directory (e.g. Kinetics)
    encoder_args: dict[str, Any] = field(default_factory=dict)  # zoo constructor overrides
    train_csv: str | None = field(default=None, metadata={"path": "file"})  # TSP ground-truth CSV
    gvf: str | None = field(default=None, metadata={"path": "file"})  # `ssl-video tsp gvf` output
    global_feature: Literal["gvf", "none"] = "gvf"  # what the region head sees next to the clip feature
    clips_per_segment: int = 5  # clips per segment per epoch
    action_weight: float = 1.0
    region_weight: float = 1.0  # 0: TAC (action head only)
    backbone_lr_scale: float = 0.05  # backbone lr = optim.lr x this (1e-4 with heads at 2e-3)
    freeze_stem: bool = True
    num_classes: int = 0  # 0: the action labels of train_csv

    def __post_init__(self):
        for name in ("action_weight", "region_weight", "backbone_lr_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{SECTION}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.action_weight == 0 and self.region_weight == 0:
            raise ConfigError(f"{SECTION}.region_weight", "action_weight and region_weight are both 0: nothing to learn")
        if self.clips_per_segment < 1:
            raise ConfigError(f"{SECTION}.clips_per_segment", f"must be >= 1, got {self.clips_per_segment}")

    @property
    def uses_gvf(self) -> bool:
        return self.region_weight > 0 and self.global_feature == "gvf"


def _accuracy(logits: Tensor, target: Tensor, keep: Tensor) -> Tensor:
    hits = ((logits.argmax(1) == target) & keep).sum()
    return (hits.float() / keep.sum().clamp(min=1)).detach()


class TSP(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int, action_weight: float = 1.0, region_weight: float = 1.0,
                 use_gvf: bool = True, backbone_lr_scale: float = 1.0, freeze_stem: bool = False):
        super().__init__()
        dim = encoder.spec.feature_dim
        self.video_encoder = encoder
        self.action_weight, self.region_weight = float(action_weight), float(region_weight)
        self.use_gvf = bool(use_gvf) and region_weight > 0
        self.backbone_lr_scale = backbone_lr_scale
        self.action_head = nn.Linear(dim, num_classes) if action_weight > 0 else None
        self.region_head = nn.Linear(2 * dim if self.use_gvf else dim, 2) if region_weight > 0 else None
        self.freeze_stem = freeze_stem
        if freeze_stem:
            stem = getattr(encoder, "stem", None)
            if not isinstance(stem, nn.Module):
                raise UserError(f"{SECTION}.freeze_stem: encoder {encoder.encoder_name} has no stem")
            stem.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_stem:  # a frozen stem keeps its BatchNorm statistics too
            self.video_encoder.stem.eval()
        return self

    def region_input(self, local: Tensor, gvf: Tensor | None) -> Tensor:
        """What the region head sees: ``[local ⊕ global]`` (or ``local`` alone without GVF)."""
        if not self.use_gvf:
            return local
        if gvf is None:
            raise UserError("the batch has no 'gvf': give tsp.gvf (or set tsp.global_feature: none)")
        return torch.cat([local, gvf.to(local.dtype)], dim=1)

    def forward(self, batch: dict) -> dict:
        local = self.video_encoder(batch["video"])
        zero = local.new_zeros(())
        out: dict[str, Tensor] = {}
        loss = zero
        if self.action_head is not None:
            label = batch["label"]
            foreground = label >= 0
            logits = self.action_head(local)
            # background clips (label -1) are ignored: no loss, no gradient
            loss_action = F.cross_entropy(logits, label, ignore_index=-1, reduction="sum") / foreground.sum().clamp(min=1)
            loss = loss + self.action_weight * loss_action
            out["loss_action"] = loss_action.detach()
            out["top1_action"] = _accuracy(logits, label, foreground)
            out["foreground"] = foreground.float().mean().detach()
        if self.region_head is not None:
            region = batch["region"]
            logits = self.region_head(self.region_input(local, batch.get("gvf")))
            loss_region = F.cross_entropy(logits, region)
            loss = loss + self.region_weight * loss_region
            out["loss_region"] = loss_region.detach()
            out["top1_region"] = _accuracy(logits, region, torch.ones_like(region, dtype=torch.bool))
        out["loss"] = loss
        return out

    def encoders(self) -> dict:
        enc = self.video_encoder
        return {"video": {"name": enc.encoder_name, "args": dict(enc.encoder_args or {}), "prefix": "video_encoder."}}

    def parameter_groups(self) -> list[dict]:
        heads = [p for head in (self.action_head, self.region_head) if head is not None for p in head.parameters()]
        backbone = [p for p in self.video_encoder.parameters() if p.requires_grad]
        return [{"name": "backbone", "params": backbone, "lr_scale": self.backbone_lr_scale, "weight_decay": None},
                {"name": "heads", "params": heads, "lr_scale": 1.0, "weight_decay": None}]


def _encoder(cfg: TSPConfig, clip, seed: int) -> nn.Module:
    from ssl_video.methods.stica import _input_contract
    from ssl_video.models.io import resolve_encoder

    return resolve_encoder(cfg.encoder, cfg.encoder_args, defaults=_input_contract(clip)[0], seed=seed,
                           modality="video", key=f"{SECTION}.encoder").model.train()


@register_method("tsp")
def build_tsp(recipe) -> tuple[TSP, Any]:
    """``(TSP method, SegmentClipDataset of tsp.train_csv)`` from a recipe with ``tsp`` and ``data``.

    Videos are ``data.videos`` (or ``data.root``) joined with each row's ``filename``; clips follow
    ``data.clip`` (frames, fps, decode size, augmentation; audio is not used).
    """
    from ssl_video.data.untrimmed import SegmentClipDataset, action_classes, read_ground_truth_csv
    from ssl_video.features.gvf import read_gvf

    cfg, data = getattr(recipe, SECTION, None) or TSPConfig(), recipe.data
    if data.dataset != "tsp":
        raise ConfigError("data.dataset", f"method tsp reads untrimmed videos: set it to 'tsp', got {data.dataset!r}")
    if cfg.train_csv is None:
        raise ConfigError(f"{SECTION}.train_csv", "missing: give the TSP ground-truth CSV of the training videos")
    videos = data.videos or data.root
    if videos is None:
        raise ConfigError("data.videos", "missing: give the directory holding the videos named by tsp.train_csv")
    if cfg.uses_gvf and cfg.gvf is None:
        raise ConfigError(f"{SECTION}.gvf", "missing: compute it with `ssl-video tsp gvf` (or set "
                          f"{SECTION}.global_feature: none, or {SECTION}.region_weight: 0 for TAC)")
    clip = dataclasses.replace(data.clip, views=1, audio=None)
    segments = read_ground_truth_csv(cfg.train_csv)
    classes = action_classes(segments)
    num_classes = cfg.num_classes or len(classes)
    if num_classes < len(classes) or num_classes < 1:
        raise ConfigError(f"{SECTION}.num_classes", f"is {num_classes} but {cfg.train_csv} has {len(classes)} "
                          "action labels")
    gvf = read_gvf(cfg.gvf) if cfg.uses_gvf else None
    dataset = SegmentClipDataset(segments, videos, clip, classes, cfg.clips_per_segment, train=True,
                                 seed=recipe.seed, gvf=gvf)
    if len(dataset) == 0:
        raise UserError(f"{cfg.train_csv}: no segment is as long as one clip ({clip.frames} frames at {clip.fps} fps)")
    encoder = _encoder(cfg, clip, recipe.seed)
    if gvf is not None:
        dim = next(iter(gvf.values())).shape[0]
        if dim != encoder.spec.feature_dim:
            raise ConfigError(f"{SECTION}.gvf", f"holds {dim}-d features but the encoder gives "
                              f"{encoder.spec.feature_dim}-d ones")
    method = TSP(encoder, num_classes, cfg.action_weight, cfg.region_weight, cfg.uses_gvf, cfg.backbone_lr_scale,
                 cfg.freeze_stem)
    return method, dataset
