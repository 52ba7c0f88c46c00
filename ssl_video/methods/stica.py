"""STiCA: audio-visual contrastive learning with Feature Crop and transformer pooling.

Space-Time Crop & Attend (Patrick, Asano et al. 2021; official code facebookresearch/GDT, REFERENCE §4).
One training step, for a batch of ``B`` clips each with two augmented views of the same decoded clip:

1. each view goes through the video encoder ONCE (``forward_features``: ``B x C x T' x H' x W'``);
2. the whole map of each view is pooled (:class:`~ssl_video.models.heads.CropPooling`) and projected
   (:class:`~ssl_video.models.heads.ProjectionHead`); the audio (``B x 1 x F x T``) is encoded once,
   averaged and projected;
3. cross-modal term: ``loss_av = 0.5 * (nce(view 1, audio) + nce(view 2, audio))``, each symmetric
   (:func:`~ssl_video.losses.cross_modal_nce`, temperature 0.1), clips without audio removed from the
   queries and from the negatives;
4. Feature Crop: crops are plain slices of each view's map (one set of offsets per view, shared by the
   batch), drawn with an inclusive upper bound. Spatial crops keep every time step, temporal crops the
   whole frame. Pairs, per kind (spatial, temporal): large crop ``i`` of view 1 with large crop ``i`` of
   view 2, symmetric; as published only ``i = 1`` is paired (two large crops per kind at most; the first
   large crop then serves only as a key) unless ``pair_every_large``; every small crop of view 2 (query)
   against every large crop of view 1 (key), one direction. Temperature 0.5. ``loss_crop`` is the mean
   over all pairs;
5. ``loss = av_weight * loss_av + crop_weight * loss_crop`` (published 0.5 / 0.5).

Every key is detached and negatives come from the global batch (:mod:`ssl_video.losses`).

Crop offsets come from ``random.Random(f"{seed}:{step}")`` where ``step`` is a buffer counting training
forward passes: the same offsets on every process (as one process with the global batch would use),
and a resumed run continues the sequence exactly.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from ssl_video.errors import ConfigError, UserError
from ssl_video.losses import cross_modal_nce, info_nce
from ssl_video.methods import register_method
from ssl_video.models.heads import CropPooling, ProjectionHead

__all__ = [
    "FeatureCropConfig",
    "PoolingConfig",
    "StiCAConfig",
    "CropBox",
    "CROP_GROUPS",
    "window_cells",
    "crop_boxes",
    "feature_crops",
    "crop_pair_losses",
    "STiCA",
    "build_stica",
]

CROP_GROUPS = ("spatial_large", "spatial_small", "temporal_large", "temporal_small")
SECTION = "stica"


def _check_window(value: int | float, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a cell count (int) or a fraction of the grid (float), got {value!r}")
    if isinstance(value, int) and value < 1:
        raise ConfigError(key, f"a window of cells must be at least 1, got {value}")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ConfigError(key, f"a window fraction must be in (0, 1], got {value}")


@dataclass
class FeatureCropConfig:
    """How many crops of each kind each view gets, and their window sizes.

    A window is a number of feature-map cells (int; at most the grid) or a fraction of the grid (float,
    rounded half up, at least one cell). The defaults give the published windows: 6x6 and 4x4 on the 7x7
    grid; 3 and 2 of 4 time steps (6 and 4 of 8). Counts default to the official README example
    (2 large + 4 small spatial, 2 large + 1 small temporal).
    """

    spatial_large: int = 2
    spatial_small: int = 4
    temporal_large: int = 2
    temporal_small: int = 1
    spatial_large_window: int | float = 6 / 7
    spatial_small_window: int | float = 4 / 7
    temporal_large_window: int | float = 0.75
    temporal_small_window: int | float = 0.5
    pair_every_large: bool = False  # False: only the second large crops of the two views pair (published)

    def __post_init__(self):
        for name in CROP_GROUPS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{SECTION}.crops.{name}", f"expected a count >= 0, got {value!r}")
            _check_window(getattr(self, f"{name}_window"), f"{SECTION}.crops.{name}_window")
        if not self.pair_every_large:
            for kind in ("spatial", "temporal"):
                if getattr(self, f"{kind}_large") > 2:
                    raise ConfigError(f"{SECTION}.crops.{kind}_large",
                                      "the published pairing uses at most 2 large crops per kind "
                                      "(set crops.pair_every_large: true to pair every large crop)")


@dataclass
class PoolingConfig:
    """Crop pooling: ``layers=0`` is global average pooling; otherwise a post-LayerNorm transformer."""

    layers: int = 2
    heads: int = 4
    width: int | None = None  # None: the video encoder's feature dimension (512 published)
    ffn: int | None = None  # None: 4 * width (2048 published)
    dropout: float = 0.0
    tokens: Literal["time", "spacetime"] = "time"  # "time": average space, attend over time (published)
    class_token: bool = False  # published: no class token, token 0 is the output
    positional: bool = False  # learned positional embedding (published: available, off)

    def __post_init__(self):
        if self.layers < 0:
            raise ConfigError(f"{SECTION}.pooling.layers", f"expected >= 0, got {self.layers}")
        if self.heads < 1:
            raise ConfigError(f"{SECTION}.pooling.heads", f"expected >= 1, got {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{SECTION}.pooling.dropout", f"expected a value in [0, 1), got {self.dropout}")


@dataclass
class StiCAConfig:
    """The ``stica:`` recipe section (defaults: the published settings where they are size-independent)."""

    video_encoder: str = "r2plus1d_18"
    video_encoder_args: dict[str, Any] = field(default_factory=dict)
    audio_encoder: str = "audio_resnet9"
    audio_encoder_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 256
    head_hidden: int | None = None  # None: the input dimension of the head (512 published)
    head_dropout: float = 0.3
    cross_temperature: float = 0.1
    within_temperature: float = 0.5
    av_weight: float = 0.5
    crop_weight: float = 0.5
    detach_keys: bool = True  # published: gradients through the query side only; False: through both sides
    feature_crop: bool = True  # False: no crop terms (cross-modal only)
    crops: FeatureCropConfig = field(default_factory=FeatureCropConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)

    def __post_init__(self):
        for name in ("cross_temperature", "within_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{SECTION}.{name}", f"must be positive, got {getattr(self, name)}")
        for name in ("av_weight", "crop_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{SECTION}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.embed_dim < 1:
            raise ConfigError(f"{SECTION}.embed_dim", f"must be >= 1, got {self.embed_dim}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"{SECTION}.head_dropout", f"expected a value in [0, 1), got {self.head_dropout}")
        if self.av_weight == 0 and (self.crop_weight == 0 or not self.feature_crop):
            raise ConfigError(f"{SECTION}.av_weight", "with no cross-modal and no crop term there is nothing to learn")


# ----------------------------------------------------------------------------------------------------
# Feature Crop


class CropBox(NamedTuple):
    """Half-open cell ranges ``[t0, t1) x [h0, h1) x [w0, w1)`` of a ``C x T x H x W`` feature map."""

    t0: int
    t1: int
    h0: int
    h1: int
    w0: int
    w1: int

    def slice(self, feature_map: Tensor) -> Tensor:
        """The crop of ``feature_map`` (``B x C x T x H x W``): a view, no copy."""
        return feature_map[:, :, self.t0:self.t1, self.h0:self.h1, self.w0:self.w1]


def window_cells(window: int | float, size: int) -> int:
    """Cells covered along an axis of ``size`` cells: an int is a count (capped at ``size``), a float a
    fraction (rounded half up, between 1 and ``size``)."""
    if isinstance(window, float):
        return max(1, min(size, math.floor(window * size + 0.5)))
    return max(1, min(size, int(window)))


def _randint(rng: random.Random | torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]``, both ends included."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(low, high + 1, (1,), generator=rng))
    return rng.randint(low, high)


def crop_boxes(grid: tuple[int, int, int], crops: FeatureCropConfig,
               rng: random.Random | torch.Generator) -> dict[str, list[CropBox]]:
    """Random crop boxes on a ``T x H x W`` grid, per group (:data:`CROP_GROUPS`), drawn in that order.

    Offsets are uniform over every position where the window fits: ``0 .. size - window`` INCLUSIVE (an
    exclusive bound would, for example, pin 6x6 windows on a 7x7 grid to the corner).
    """
    t, h, w = (int(v) for v in grid)
    out: dict[str, list[CropBox]] = {}
    for group in CROP_GROUPS:
        kind = group.split("_")[0]
        window = getattr(crops, f"{group}_window")
        boxes = []
        for _ in range(getattr(crops, group)):
            if kind == "spatial":
                wh, ww = window_cells(window, h), window_cells(window, w)
                h0, w0 = _randint(rng, 0, h - wh), _randint(rng, 0, w - ww)
                boxes.append(CropBox(0, t, h0, h0 + wh, w0, w0 + ww))
            else:
                wt = window_cells(window, t)
                t0 = _randint(rng, 0, t - wt)
                boxes.append(CropBox(t0, t0 + wt, 0, h, 0, w))
        out[group] = boxes
    return out


def feature_crops(feature_map: Tensor, crops: FeatureCropConfig,
                  rng: random.Random | torch.Generator) -> dict[str, list[Tensor]]:
    """Crops of a ``B x C x T x H x W`` map, per group: plain slices at :func:`crop_boxes` positions."""
    if feature_map.ndim != 5:
        raise ValueError(f"expected a B x C x T x H x W feature map, got shape {tuple(feature_map.shape)}")
    boxes = crop_boxes(tuple(feature_map.shape[2:]), crops, rng)
    return {group: [box.slice(feature_map) for box in group_boxes] for group, group_boxes in boxes.items()}


# ----------------------------------------------------------------------------------------------------
# the method


def _forget_step(module: STiCA, incompatible_keys) -> None:
    module._step = None  # re-read crop_step after a state dict was loaded


class STiCA(nn.Module):
    """The STiCA method (see the module docstring). ``forward(batch)`` returns the loss dict.

    ``batch``: ``video`` ``B x 2 x 3 x T x H x W`` (two views), ``audio`` ``B x 1 x F x T`` (log-mel),
    ``has_audio`` ``(B,)`` bool (optional: all true). Returns ``loss``, ``loss_av``, ``loss_crop``, the
    mean of each pair kind present (``crop_spatial_ll``, ``crop_spatial_sl``, ``crop_temporal_ll``,
    ``crop_temporal_sl``) and ``audio_fraction`` (local clips with audio); all but ``loss`` detached.
    """

    def __init__(self, cfg: StiCAConfig | None = None, video_encoder: nn.Module | None = None,
                 audio_encoder: nn.Module | None = None, seed: int = 0):
        super().__init__()
        from ssl_video.models.registry import create_encoder

        self.cfg = cfg = cfg or StiCAConfig()
        self.seed = seed
        self.video_encoder = video_encoder or create_encoder(cfg.video_encoder, **cfg.video_encoder_args)
        self.audio_encoder = audio_encoder or create_encoder(cfg.audio_encoder, **cfg.audio_encoder_args)
        for role, encoder in (("video", self.video_encoder), ("audio", self.audio_encoder)):
            spec = getattr(encoder, "spec", None)
            if spec is not None and spec.modality != role:
                raise UserError(f"{SECTION}.{role}_encoder: '{encoder.encoder_name}' is a {spec.modality} encoder")
        p = cfg.pooling
        self.video_pool = CropPooling(self.video_encoder.feature_dim, layers=p.layers, heads=p.heads, width=p.width,
                                      ffn=p.ffn, dropout=p.dropout, tokens=p.tokens, class_token=p.class_token,
                                      positional=p.positional)
        self.video_head = ProjectionHead(self.video_pool.output_dim, cfg.head_hidden, cfg.embed_dim,
                                         cfg.head_dropout)
        self.audio_head = ProjectionHead(self.audio_encoder.feature_dim, cfg.head_hidden, cfg.embed_dim,
                                         cfg.head_dropout)
        self.register_buffer("crop_step", torch.zeros((), dtype=torch.long))
        self._step: int | None = None  # host copy of crop_step (reading the buffer on a GPU would sync)
        self.register_load_state_dict_post_hook(_forget_step)

    # -- the Method contract -------------------------------------------------------------------------

    def encoders(self) -> dict[str, dict]:
        return {
            role: {"name": encoder.encoder_name, "args": dict(encoder.encoder_args or {}), "prefix": prefix}
            for role, encoder, prefix in (("video", self.video_encoder, "video_encoder."),
                                          ("audio", self.audio_encoder, "audio_encoder."))
        }

    def parameter_groups(self) -> list[dict]:
        def trainable(*modules: nn.Module) -> list[nn.Parameter]:
            return [param for module in modules for param in module.parameters() if param.requires_grad]

        return [
            {"name": "video_encoder", "params": trainable(self.video_encoder), "lr_scale": 1.0, "weight_decay": None},
            {"name": "audio_encoder", "params": trainable(self.audio_encoder), "lr_scale": 1.0, "weight_decay": None},
            {"name": "heads", "params": trainable(self.video_pool, self.video_head, self.audio_head),
             "lr_scale": 1.0, "weight_decay": None},
        ]

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
        """The generator of this step's crop offsets (advances the step counter in training)."""
        if self._step is None:
            self._step = int(self.crop_step)
        rng = random.Random(f"{self.seed}:{self._step}")
        if self.training:
            self._step += 1
            self.crop_step.fill_(self._step)
        return rng

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
            audio_emb = self.embed_audio(batch["audio"])
            loss_av = 0.5 * sum(cross_modal_nce(self.embed_map(m), audio_emb, cfg.cross_temperature, valid,
                                                detach_key=cfg.detach_keys)
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


def _input_contract(clip) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encoder input-contract fields matching the data pipeline, so exported specs say what was trained."""
    video = {"frames": clip.frames, "fps": float(clip.fps), "crop_size": clip.video.crop_size,
             "resize_size": clip.decode_size, "mean": list(clip.video.mean), "std": list(clip.video.std)}
    audio: dict[str, Any] = {}
    if clip.audio is not None:
        a = clip.audio
        audio = {"sample_rate": a.sample_rate, "n_mels": a.n_mels, "n_fft": a.n_fft, "win_seconds": a.win_seconds,
                 "hop_seconds": a.hop_seconds, "seconds": float(clip.audio_seconds or clip.frames / clip.fps)}
    return video, audio


@register_method("stica")
def build_stica(recipe) -> tuple[STiCA, Any]:
    """``(STiCA method, training ClipDataset with two views)`` from a recipe with ``stica`` and ``data``.

    Encoder input-contract fields not given in ``*_encoder_args`` are taken from ``data.clip`` (frames,
    fps, crop size, normalisation; log-mel settings and audio length).
    """
    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets import load_layout
    from ssl_video.models.registry import create_encoder

    cfg = getattr(recipe, SECTION, None) or StiCAConfig()
    data = recipe.data
    clip = dataclasses.replace(data.clip, views=2)
    if clip.sampling.num_clips != 1:
        raise ConfigError("data.clip.sampling.num_clips", "STiCA takes one clip per video (two views of it)")
    if clip.audio is None and cfg.av_weight > 0:
        raise ConfigError("data.clip.audio", "STiCA's cross-modal term needs audio features")
    layout = load_layout(data.dataset, root=data.root, videos=data.videos, splits=data.splits)
    records = layout.records(data.split, data.subset)
    if not records:
        raise UserError(f"{data.dataset}: split {data.split} subset {data.subset} lists no readable video")
    dataset = ClipDataset(records, clip, train=True, seed=recipe.seed)
    video_inputs, audio_inputs = _input_contract(clip)
    video_encoder = create_encoder(cfg.video_encoder, **{**video_inputs, **cfg.video_encoder_args})
    audio_encoder = create_encoder(cfg.audio_encoder, **{**audio_inputs, **cfg.audio_encoder_args})
    method = STiCA(cfg, video_encoder=video_encoder, audio_encoder=audio_encoder, seed=recipe.seed)
    return method, dataset
