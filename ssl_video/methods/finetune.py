"""``finetune``: supervised classification with a zoo video encoder (full fine-tuning or a frozen backbone).

Encoder (``finetune.encoder`` + ``encoder_args``, or an exported encoder directory ``finetune.init``) ->
pooled feature -> dropout -> linear classifier -> cross-entropy (optional label smoothing). Parameter
groups: ``backbone`` (lr x ``backbone_lr_scale``; absent when the backbone is frozen) and ``head``.
The training set is ``data.subset`` of split ``data.split`` of ``data.dataset``, random clips, training
augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_video.errors import ConfigError, UserError
from ssl_video.methods import register_method
from ssl_video.methods.base import Method

__all__ = ["Finetune", "build_encoder"]


@register_method("finetune", section="finetune")
class Finetune(Method):
    ENCODERS = {"video": "video_encoder"}

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.5, label_smoothing: float = 0.0,
                 backbone_lr_scale: float = 1.0, freeze_backbone: bool = False):
        super().__init__()
        self.video_encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.spec.feature_dim, num_classes)
        self.label_smoothing = label_smoothing
        self.backbone_lr_scale = backbone_lr_scale
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.freeze(self.video_encoder)

    # -- building ------------------------------------------------------------------------------------

    @classmethod
    def from_recipe(cls, recipe) -> Finetune:
        """Encoder of ``finetune.init`` or ``finetune.encoder``; classes: ``finetune.num_classes`` or those of
        the dataset's layout (no video is read)."""
        cfg = recipe.finetune
        num_classes = cfg.num_classes or len(_layout(recipe).classes)
        if num_classes < 1:
            raise ConfigError("finetune.num_classes", f"{recipe.data.dataset} has no classes: set it")
        return cls(build_encoder(cfg), num_classes, cfg.dropout, cfg.label_smoothing, cfg.backbone_lr_scale,
                   cfg.freeze_backbone)

    @classmethod
    def train_dataset(cls, recipe):
        """Random clips of ``data.subset`` of split ``data.split``, training augmentation."""
        from ssl_video.data.clip_dataset import ClipDataset

        cfg, data = recipe.finetune, recipe.data
        layout = _layout(recipe)
        records = layout.records(data.split, data.subset)
        if not records:
            raise UserError(f"{data.dataset}: split {data.split} subset {data.subset} has no videos")
        num_classes = cfg.num_classes or len(layout.classes)
        top = max(r.label for r in records)
        if top >= num_classes:
            raise ConfigError("finetune.num_classes", f"is {num_classes} but the data has label {top}")
        return ClipDataset(records, data.clip, train=True, seed=data.seed)

    # -- the step ------------------------------------------------------------------------------------

    def logits(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.video_encoder(video)))

    def forward(self, batch: dict) -> dict:
        video, label = batch["video"], batch["label"]
        if video.ndim == 6:  # several clips per video: each clip is a sample
            clips = video.shape[1]
            video = video.flatten(0, 1)
            label = label.repeat_interleave(clips)
        logits = self.logits(video)
        loss = F.cross_entropy(logits, label, label_smoothing=self.label_smoothing, ignore_index=-1)
        top1 = (logits.argmax(1) == label).float().mean()
        return {"loss": loss, "top1": top1.detach()}

    def parameter_groups(self) -> list[dict]:
        groups = [self.group("head", self.head)]
        if not self.freeze_backbone:
            groups.insert(0, self.group("backbone", self.video_encoder, lr_scale=self.backbone_lr_scale))
        return groups


def _layout(recipe):
    from ssl_video.data.datasets import load_layout

    data = recipe.data
    return load_layout(data.dataset, data.root, data.videos, data.splits)


def build_encoder(cfg) -> nn.Module:
    """The video encoder of a :class:`~ssl_video.recipe.FinetuneConfig`: from ``init`` or the zoo."""
    from ssl_video.models.registry import create_encoder

    if cfg.init:
        from ssl_video.export import load_encoder

        encoder = load_encoder(cfg.init)
        if cfg.encoder is not None and cfg.encoder != encoder.encoder_name:
            raise UserError(f"finetune.encoder is '{cfg.encoder}' but finetune.init ({cfg.init}) holds "
                            f"'{encoder.encoder_name}': set finetune.encoder to null or to the same name")
        if cfg.encoder_args and dict(cfg.encoder_args) != dict(encoder.encoder_args or {}):
            raise UserError(f"finetune.encoder_args {cfg.encoder_args} differ from those of finetune.init "
                            f"({encoder.encoder_args}): leave finetune.encoder_args empty")
        return encoder.train()
    encoder = create_encoder(cfg.encoder, **dict(cfg.encoder_args))
    if encoder.spec.modality != "video":
        raise UserError(f"finetune.encoder '{cfg.encoder}' is an {encoder.spec.modality} encoder; finetune needs "
                        "a video encoder")
    return encoder
