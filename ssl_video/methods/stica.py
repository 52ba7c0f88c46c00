"""STiCA: audio-visual contrastive learning with Feature Crop and transformer pooling.

Space-Time Crop & Attend (Patrick, Asano et al. 2021; official code facebookresearch/GDT, REFERENCE §4).
One training step, for a batch of ``B`` clips each with two augmented views of the same decoded clip:

1. each view goes through the video encoder ONCE (``forward_features``: ``B x C x T' x H' x W'``);
2. the whole map of each view is pooled (:class:`~ssl_video.models.pooling.CropPooling`) and projected
   (:class:`~ssl_video.models.heads.ProjectionHead`); the audio (``B x 1 x F x T``) is encoded once,
   averaged and projected (``audio_per_view``: once per view, as the official step);
3. cross-modal term: ``loss_av = 0.5 * (nce(view 1, audio) + nce(view 2, audio))``, each symmetric
   (:func:`~ssl_video.losses.cross_modal_nce`, temperature 0.1), clips without audio removed from the
   queries and from the negatives;
4. Feature Crop: crops are plain slices of each view's map (one set of offsets per view, shared by the
   batch; offsets in :mod:`ssl_video.methods.feature_crop`). Spatial crops keep every time step, temporal crops the
   whole frame. Pairs, per kind (spatial, temporal): large crop ``i`` of view 1 with large crop ``i`` of
   view 2, symmetric; as published only ``i = 1`` is paired (two large crops per kind at most; the first
   large crop then serves only as a key) unless ``pair_every_large``; every small crop of view 2 (query)
   against every large crop of view 1 (key), one direction. Temperature 0.5. ``loss_crop`` is the mean
   over all pairs;
5. ``loss = av_weight * loss_av + crop_weight * loss_crop`` (published 0.5 / 0.5).

Every key is detached and negatives come from the global batch (:mod:`ssl_video.losses`).

Crop offsets come from ``random.Random(f"{seed}:{step}")`` where ``step`` is the global optimizer step the
trainer hands in (:meth:`~ssl_video.methods.base.Method.set_step`): the same offsets on every process and
for every accumulated micro-batch (as one process with the global batch would use), and a resumed run
continues the sequence exactly with nothing saved.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch
from torch import Tensor, nn

from ssl_video.errors import UserError
from ssl_video.losses import cross_modal_nce, info_nce
from ssl_video.methods import register_method
from ssl_video.methods.base import Method
from ssl_video.methods.feature_crop import CropBox, crop_boxes, feature_crops
from ssl_video.models.heads import ProjectionHead
from ssl_video.models.pooling import CropPooling
from ssl_video.recipe.methods import FeatureCropConfig, StiCAConfig

__all__ = ["CropBox", "crop_boxes", "feature_crops", "crop_pair_losses", "STiCA", "input_contract"]

# ----------------------------------------------------------------------------------------------------
# the method


@register_method("stica", section="stica")
class STiCA(Method):
    """The STiCA method (see the module docstring). ``forward(batch)`` returns the loss dict.

    ``batch``: ``video`` ``B x 2 x 3 x T x H x W`` (two views), ``audio`` ``B x 1 x F x T`` (log-mel),
    ``has_audio`` ``(B,)`` bool (optional: all true). Returns ``loss``, ``loss_av``, ``loss_crop``, the
    mean of each pair kind present (``crop_spatial_ll``, ``crop_spatial_sl``, ``crop_temporal_ll``,
    ``crop_temporal_sl``) and ``audio_fraction`` (local clips with audio); all but ``loss`` detached.
    """

    ENCODERS = {"video": "video_encoder", "audio": "audio_encoder"}

    def __init__(self, cfg: StiCAConfig | None = None, video_encoder: nn.Module | None = None,
                 audio_encoder: nn.Module | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg = cfg or StiCAConfig()
        self.seed = seed
        self.video_encoder = video_encoder or _encoder(cfg, "video", {})
        self.audio_encoder = audio_encoder or _encoder(cfg, "audio", {})
        p = cfg.pooling
        self.video_pool = CropPooling(self.video_encoder.feature_dim, layers=p.layers, heads=p.heads, width=p.width,
                                      ffn=p.ffn, dropout=p.dropout, tokens=p.tokens, class_token=p.class_token,
                                      positional=p.positional)
        self.video_head = ProjectionHead(self.video_pool.output_dim, cfg.head_hidden, cfg.embed_dim,
                                         cfg.head_dropout)
        self.audio_head = ProjectionHead(self.audio_encoder.feature_dim, cfg.head_hidden, cfg.embed_dim,
                                         cfg.head_dropout)
        self._register_load_state_dict_pre_hook(_drop_step_buffer)

    # -- building ------------------------------------------------------------------------------------

    @classmethod
    def from_recipe(cls, recipe) -> STiCA:
        """Encoders from ``stica.*_encoder``; input-contract fields not given in ``*_encoder_args`` follow
        ``data.clip`` (frames, fps, crop, resize, normalisation; log-mel settings and audio length)."""
        cfg = recipe.stica
        video_inputs, audio_inputs = input_contract(recipe.data.clip)
        return cls(cfg, video_encoder=_encoder(cfg, "video", video_inputs),
                   audio_encoder=_encoder(cfg, "audio", audio_inputs), seed=recipe.seed)

    @classmethod
    def train_dataset(cls, recipe):
        """Two augmented views of one random clip per video of ``data.subset`` of split ``data.split``."""
        from ssl_video.data.clip_dataset import ClipDataset
        from ssl_video.data.datasets import load_layout

        data = recipe.data
        layout = load_layout(data.dataset, root=data.root, videos=data.videos, splits=data.splits)
        records = layout.records(data.split, data.subset)
        if not records:
            raise UserError(f"{data.dataset}: split {data.split} subset {data.subset} lists no readable video")
        return ClipDataset(records, dataclasses.replace(data.clip, views=2), train=True, seed=recipe.seed)

    # -- the Method contract -------------------------------------------------------------------------

    def parameter_groups(self) -> list[dict]:
        return [self.group("video_encoder", self.video_encoder), self.group("audio_encoder", self.audio_encoder),
                self.group("heads", self.video_pool, self.video_head, self.audio_head)]

    # -- pieces (also used by benchmarks) ------------------------------------------------------------

    def video_features(self, video: Tensor) -> Tensor:
        """One backbone pass: ``B x 3 x T x H x W`` -> feature map ``B x C x T' x H' x W'``."""
        return self.video_encoder.forward_features(video)

    def embed_map(self, feature_map: Tensor) -> Tensor:
        """Pool and project a (crop of a) video feature map: ``B x embed_dim``, unit norm."""
        return self.video_head(self.video_pool(feature_map))

    def embed_audio(self, audio: Tensor) -> Tensor:
        return self.audio_head(self.audio_encoder(audio))

    def crop_rng(self) -> random.Random:
        """The generator of this step's crop offsets (see the module docstring)."""
        return random.Random(f"{self.seed}:{self.step}")

    # -- the step ------------------------------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        video = batch["video"]
        if video.ndim != 6 or video.shape[1] != 2:
            raise ValueError(f"STiCA expects batch['video'] of shape B x 2 x C x T x H x W (two views), "
                             f"got {tuple(video.shape)}")
        maps = [self.video_features(video[:, view]) for view in range(2)]
        zero = maps[0].new_zeros((), dtype=torch.float32)
        out: dict[str, Tensor] = {}

        loss_av = zero
        if cfg.av_weight > 0:
            if "audio" not in batch:
                raise ValueError("STiCA's cross-modal term needs batch['audio'] (set data.clip.audio)")
            has_audio = batch.get("has_audio")
            valid = (torch.ones(video.shape[0], dtype=torch.bool, device=video.device) if has_audio is None
                     else has_audio.to(device=video.device, dtype=torch.bool).reshape(-1))
            shared = None if cfg.audio_per_view else self.embed_audio(batch["audio"])
            loss_av = 0.5 * sum(cross_modal_nce(self.embed_map(m), self.embed_audio(batch["audio"]) if shared is None
                                                else shared, cfg.cross_temperature, valid, detach_key=cfg.detach_keys)
                                for m in maps)
            out["audio_fraction"] = valid.float().mean()

        loss_crop = zero
        if cfg.feature_crop and cfg.crop_weight > 0:
            loss_crop, terms = self._crop_losses(maps)
            out.update({name: value.detach() for name, value in terms.items()})

        out["loss"] = cfg.av_weight * loss_av + cfg.crop_weight * loss_crop
        out["loss_av"] = loss_av.detach()
        out["loss_crop"] = loss_crop.detach()
        return out

    @torch.compiler.disable
    def draw_crop_boxes(self, grids: list[tuple[int, int, int]]) -> list[dict[str, list[CropBox]]]:
        """This step's crop boxes for each view's ``T x H x W`` grid (host-side Python, never compiled)."""
        rng = self.crop_rng()
        return [crop_boxes(grid, self.cfg.crops, rng) for grid in grids]

    def _crop_losses(self, maps: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        boxes = self.draw_crop_boxes([tuple(m.shape[2:]) for m in maps])
        loss, terms = crop_pair_losses(boxes, lambda view, box: self.embed_map(box.slice(maps[view])),
                                       self.cfg.crops, self.cfg.within_temperature, self.cfg.detach_keys)
        return (maps[0].new_zeros((), dtype=torch.float32) if loss is None else loss), terms


def crop_pair_losses(boxes: list[dict[str, list[CropBox]]], embed, crops: FeatureCropConfig,
                     temperature: float, detach_keys: bool = True) -> tuple[Tensor | None, dict[str, Tensor]]:
    """The within-modal crop loss for two views' crop ``boxes`` (see the module docstring for the pairs).

    ``embed(view, box)`` gives the unit-norm embedding of one crop (each is computed once): slicing a
    feature map for Feature Crop; a benchmark passes input-space crops through the backbone instead.
    Returns the mean over all pairs (None when the boxes make no pair) and the mean of each pair kind.
    """
    cache: dict[tuple[int, str, int], Tensor] = {}

    def nce(query: Tensor, key: Tensor) -> Tensor:
        return info_nce(query, key, temperature, detach_key=detach_keys)

    def crop(view: int, group: str, index: int) -> Tensor:
        key = (view, group, index)
        if key not in cache:
            cache[key] = embed(view, boxes[view][group][index])
        return cache[key]

    pairs: dict[str, list[Tensor]] = {}
    for kind in ("spatial", "temporal"):
        large, small = f"{kind}_large", f"{kind}_small"
        for i in range(len(boxes[0][large])):
            if crops.pair_every_large or i == 1:
                a, b = crop(0, large, i), crop(1, large, i)
                pairs.setdefault(f"crop_{kind}_ll", []).append(
                    0.5 * (nce(a, b) + nce(b, a)))
            for j in range(len(boxes[1][small])):
                pairs.setdefault(f"crop_{kind}_sl", []).append(
                    nce(crop(1, small, j), crop(0, large, i)))
    losses = [loss for group in pairs.values() for loss in group]
    if not losses:
        return None, {}
    terms = {name: torch.stack(group).mean() for name, group in pairs.items()}
    return torch.stack(losses).mean(), terms


# ----------------------------------------------------------------------------------------------------
# builder


def _drop_step_buffer(state: dict, prefix: str, *args) -> None:
    state.pop(f"{prefix}crop_step", None)  # checkpoints of earlier versions kept the step as a buffer


def input_contract(clip) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encoder input-contract fields matching the data pipeline, so exported specs say what was trained."""
    video = {"frames": clip.frames, "fps": float(clip.fps), "crop_size": clip.video.crop,
             "resize_size": list(clip.decode_size) if clip.resize_mode == "fixed" else clip.resize, "mean": list(clip.video.mean), "std": list(clip.video.std)}
    audio: dict[str, Any] = {}
    if clip.audio is not None:
        a = clip.audio
        audio = {"features": a.features, "sample_rate": a.sample_rate, "n_mels": a.n_mels, "n_fft": a.n_fft, "win_seconds": a.win_seconds,
                 "hop_seconds": a.hop_seconds, "seconds": float(clip.audio_seconds or clip.frames / clip.fps)}
    return video, audio


def _encoder(cfg: StiCAConfig, role: str, defaults: dict[str, Any]) -> nn.Module:
    """``stica.<role>_encoder``: a zoo name (random init, ``defaults`` from the clip) or an encoder directory."""
    from ssl_video.models.io import resolve_encoder

    return resolve_encoder(getattr(cfg, f"{role}_encoder"), getattr(cfg, f"{role}_encoder_args"), defaults=defaults,
                           modality=role, key=f"stica.{role}_encoder").model.train()
