"""TSP: temporally-sensitive supervised pretraining on untrimmed videos (Alwassel et al. 2021, REFERENCE §4).

One training step, for a batch of clips sampled from labelled segments
(:class:`~ssl_video.data.segment_dataset.SegmentClipDataset`):

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
encoder's stem is not trained, and its BatchNorm statistics stay frozen (``stem_bn="frozen"``) or keep updating
as in the official code (``"train"``: stem lr 0, model in training mode). ``head_init="official"`` draws the
heads' weights from N(0, 0.01) with zero bias (official ``models/model.py``), ``"default"`` keeps PyTorch's.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_video.errors import ConfigError, UserError
from ssl_video.methods import register_method
from ssl_video.methods.base import Method
from ssl_video.recipe.methods import TSPConfig

__all__ = ["TSP"]


def _accuracy(logits: Tensor, target: Tensor, keep: Tensor) -> Tensor:
    hits = ((logits.argmax(1) == target) & keep).sum()
    return (hits.float() / keep.sum().clamp(min=1)).detach()


@register_method("tsp", section="tsp")
class TSP(Method):
    ENCODERS = {"video": "video_encoder"}

    def __init__(self, encoder: nn.Module, num_classes: int, action_weight: float = 1.0, region_weight: float = 1.0,
                 use_gvf: bool = True, backbone_lr_scale: float = 1.0, freeze_stem: bool = False,
                 stem_bn: str = "frozen", head_init: str = "default"):
        super().__init__()
        dim = encoder.spec.feature_dim
        self.video_encoder = encoder
        self.action_weight, self.region_weight = float(action_weight), float(region_weight)
        self.use_gvf = bool(use_gvf) and region_weight > 0
        self.backbone_lr_scale = backbone_lr_scale
        self.action_head = nn.Linear(dim, num_classes) if action_weight > 0 else None
        self.region_head = nn.Linear(2 * dim if self.use_gvf else dim, 2) if region_weight > 0 else None
        if head_init not in ("default", "official"):
            raise ValueError(f"head_init must be 'default' or 'official', got {head_init!r}")
        if head_init == "official":
            for head in (self.action_head, self.region_head):
                if head is not None:
                    nn.init.normal_(head.weight, 0.0, 0.01)
                    nn.init.zeros_(head.bias)
        if freeze_stem:
            stem = getattr(encoder, "stem", None)
            if not isinstance(stem, nn.Module):
                raise UserError(f"tsp.freeze_stem: encoder {encoder.encoder_name} has no stem")
            self.freeze(stem, batchnorm=stem_bn)

    # -- building ------------------------------------------------------------------------------------

    @classmethod
    def from_recipe(cls, recipe) -> TSP:
        """The encoder of ``tsp.encoder`` (input contract from ``data.clip`` for zoo names) and the heads;
        the number of classes is ``tsp.num_classes`` or the action labels of ``tsp.train_csv``."""
        from ssl_video.data.datasets.tsp import action_classes, read_ground_truth_csv

        cfg = recipe.tsp
        _check_initial_encoder(cfg)
        num_classes = cfg.num_classes
        if not num_classes:
            if cfg.train_csv is None:
                raise ConfigError("tsp.train_csv", "missing: give it, or the number of classes in tsp.num_classes")
            num_classes = len(action_classes(read_ground_truth_csv(cfg.train_csv)))
        if num_classes < 1:
            raise ConfigError("tsp.num_classes", f"{cfg.train_csv} has no action labels")
        encoder = _encoder(cfg, recipe.data.clip, recipe.seed)
        if cfg.uses_gvf and cfg.gvf is not None:
            from ssl_video.features.gvf import read_gvf

            dim = next(iter(read_gvf(cfg.gvf).values())).shape[0]
            if dim != encoder.spec.feature_dim:
                raise ConfigError("tsp.gvf", f"holds {dim}-d features but the encoder gives "
                                  f"{encoder.spec.feature_dim}-d ones")
        return cls(encoder, num_classes, cfg.action_weight, cfg.region_weight, cfg.uses_gvf, cfg.backbone_lr_scale,
                   cfg.freeze_stem, cfg.stem_bn, cfg.head_init)

    @classmethod
    def train_dataset(cls, recipe):
        """K clips per labelled segment of ``tsp.train_csv`` per epoch, with the video's GVF when used;
        videos are ``data.videos`` (or ``data.root``) joined with each row's ``filename``."""
        from ssl_video.data.datasets.tsp import action_classes, read_ground_truth_csv
        from ssl_video.data.segment_dataset import SegmentClipDataset
        from ssl_video.features.gvf import read_gvf

        cfg, data = recipe.tsp, recipe.data
        _check_initial_encoder(cfg)  # before any data is read
        if cfg.train_csv is None:
            raise ConfigError("tsp.train_csv", "missing: give the TSP ground-truth CSV of the training videos")
        videos = data.videos or data.root
        if videos is None:
            raise ConfigError("data.videos", "missing: give the directory holding the videos named by tsp.train_csv")
        if cfg.uses_gvf and cfg.gvf is None:
            raise ConfigError("tsp.gvf", "missing: compute it with `ssl-video tsp gvf` (or set "
                              "tsp.global_feature: none, or tsp.region_weight: 0 for TAC)")
        clip = dataclasses.replace(data.clip, views=1, audio=None)
        segments = read_ground_truth_csv(cfg.train_csv)
        classes = action_classes(segments)
        if cfg.num_classes and cfg.num_classes < len(classes):
            raise ConfigError("tsp.num_classes", f"is {cfg.num_classes} but {cfg.train_csv} has {len(classes)} "
                              "action labels")
        gvf = read_gvf(cfg.gvf) if cfg.uses_gvf else None
        dataset = SegmentClipDataset(segments, videos, clip, classes, cfg.clips_per_segment, train=True,
                                     seed=recipe.seed, gvf=gvf)
        if len(dataset) == 0:
            raise UserError(f"{cfg.train_csv}: no segment is as long as one clip ({clip.frames} frames at "
                            f"{clip.fps} fps)")
        return dataset

    @classmethod
    def validation_dataset(cls, recipe):
        """``tsp.valid_csv`` (or None): K evenly spaced clips per segment, centre crop, as the official run."""
        from ssl_video.data.datasets.tsp import action_classes, read_ground_truth_csv
        from ssl_video.data.segment_dataset import SegmentClipDataset
        from ssl_video.features.gvf import read_gvf

        cfg, data = recipe.tsp, recipe.data
        if cfg.valid_csv is None:
            return None
        videos = cfg.valid_videos or data.videos or data.root
        if videos is None:
            raise ConfigError("tsp.valid_videos", "missing: give the directory holding the videos of tsp.valid_csv")
        gvf_file = cfg.valid_gvf or cfg.gvf
        if cfg.uses_gvf and gvf_file is None:
            raise ConfigError("tsp.valid_gvf", "missing: the region head needs the GVF of the validation videos")
        classes = action_classes(read_ground_truth_csv(cfg.train_csv)) if cfg.train_csv else None
        segments = read_ground_truth_csv(cfg.valid_csv)
        clip = dataclasses.replace(data.clip, views=1, audio=None)
        return SegmentClipDataset(segments, videos, clip, classes or action_classes(segments),
                                  cfg.clips_per_segment, train=False, seed=recipe.seed,
                                  gvf=read_gvf(gvf_file) if cfg.uses_gvf else None)

    def validation_terms(self, batch: dict) -> dict:
        """Per head: summed cross-entropy and correct clips over the clips the head is scored on (the
        action head: foreground clips only), as the official ``evaluate``."""
        local = self.video_encoder(batch["video"])
        terms = {}
        if self.action_head is not None:
            label = batch["label"]
            keep = label >= 0
            logits = self.action_head(local)
            terms["loss_action"] = (F.cross_entropy(logits, label, ignore_index=-1, reduction="sum"), keep.sum())
            terms["top1_action"] = (((logits.argmax(1) == label) & keep).sum(), keep.sum())
        if self.region_head is not None:
            region = batch["region"]
            logits = self.region_head(self.region_input(local, batch.get("gvf")))
            terms["loss_region"] = (F.cross_entropy(logits, region, reduction="sum"), region.numel())
            terms["top1_region"] = ((logits.argmax(1) == region).sum(), region.numel())
        return terms

    def validation_summary(self, means: dict[str, float]) -> dict[str, float]:
        """Adds ``accuracy``: the mean of the heads' top-1 accuracies (the official "Avg Accuracy")."""
        heads = [v for k, v in means.items() if k.startswith("top1_")]
        return {**means, "accuracy": sum(heads) / len(heads)} if heads else means

    # -- the step ------------------------------------------------------------------------------------

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

    def parameter_groups(self) -> list[dict]:
        return [self.group("backbone", self.video_encoder, lr_scale=self.backbone_lr_scale),
                self.group("heads", self.action_head, self.region_head)]


def _check_initial_encoder(cfg: TSPConfig) -> None:
    """TSP starts from a pretrained encoder; a zoo name (random weights) needs ``tsp.allow_random_init``."""
    from ssl_video.models.io import is_encoder_directory

    if cfg.allow_random_init or is_encoder_directory(cfg.encoder):
        return
    raise ConfigError("tsp.encoder", f"'{cfg.encoder}' is a zoo name (random weights), and TSP starts from a "
                      "pretrained encoder (official: IG65M -> Kinetics R(2+1)D-34): ssl-video import tsp "
                      "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth --out encoders/r2plus1d_34_kinetics, "
                      "then tsp.encoder=encoders/r2plus1d_34_kinetics (or set tsp.allow_random_init=true)")


def _encoder(cfg: TSPConfig, clip, seed: int) -> nn.Module:
    from ssl_video.methods.stica import input_contract
    from ssl_video.models.io import resolve_encoder

    return resolve_encoder(cfg.encoder, cfg.encoder_args, defaults=input_contract(clip)[0], seed=seed,
                           modality="video", key="tsp.encoder").model.train()
