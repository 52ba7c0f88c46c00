"""Encoders by name, each with a declarative input contract.

``create_encoder("r2plus1d_18", width=0.125)`` builds a registered encoder; the result is an
:class:`Encoder` whose ``spec`` (an :class:`EncoderSpec`) says what input it expects (frames, fps, crop,
normalisation or sample rate, mel bins, window) and what it returns (feature dimension and feature-map
shape at that input). Keyword overrides are of two kinds: input-contract fields (``frames=16``,
``crop_size=128``, ``n_mels=64`` ...) change the spec, anything else (``width``, ``cost_variant`` ...)
goes to the architecture's builder. ``timm:<name>`` builds any 2-D timm model (see
:mod:`ssl_video.models.timm_encoders`).

Conventions: video input is ``B x 3 x T x H x W`` (float, normalised with the spec's mean/std), audio
input is ``B x 1 x n_mels x time`` (log-mel). ``forward_features`` returns the last feature map
(``B x C x T' x H' x W'`` or ``B x C x F' x T'``), ``forward`` its global average, ``B x C``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssl_video.errors import UserError
from ssl_video.recipe.data import audio_frames
from ssl_video.recipe.encoders import PREFIXES as RECIPE_PREFIXES
from ssl_video.recipe.encoders import register_encoder_name

__all__ = [
    "EncoderSpec",
    "Encoder",
    "register_encoder",
    "create_encoder",
    "list_encoders",
    "encoder_options",
    "describe_encoder",
    "pool_features",
    "scaled_channels",
    "TIMM_PREFIX",
    "EncoderEntry",
]

TIMM_PREFIX = "timm:"
VIDEO_INPUT_FIELDS = ("frames", "fps", "crop_size", "resize_size", "mean", "std")
AUDIO_INPUT_FIELDS = ("features", "sample_rate", "seconds", "n_mels", "n_fft", "win_seconds", "hop_seconds",
                      "time_frames")
INPUT_FIELDS = {"video": VIDEO_INPUT_FIELDS, "audio": AUDIO_INPUT_FIELDS}
_BUILTIN_MODULES = ("ssl_video.models.video", "ssl_video.models.cost", "ssl_video.models.audio",
                    "ssl_video.models.timm_encoders")
# name prefix -> factory(rest of the name, overrides) -> EncoderEntry, for families built on demand (timm:)
_PREFIXES: dict[str, Callable[[str, dict[str, Any]], Any]] = {}


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder expects and what it returns (one sample, default input)."""

    name: str
    modality: str  # "video" or "audio"
    feature_dim: int
    feature_map: tuple[int, ...]  # C x T' x H' x W' (video) or C x F' x T' (audio)
    # video input
    frames: int | None = None
    fps: float | None = None
    crop_size: int | None = None
    resize_size: int | tuple[int, int] | None = None  # short side, or (height, width), before the centre crop
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # audio input: "logmel" or "logfbank" (ssl_video.recipe.data.AudioFeatures)
    features: str | None = None
    sample_rate: int | None = None
    seconds: float | None = None
    n_mels: int | None = None
    n_fft: int | None = None
    win_seconds: float | None = None
    hop_seconds: float | None = None
    time_frames: int | None = None
    source: str = ""  # where the defaults come from

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample: ``(3, T, H, W)`` or ``(1, n_mels, time_frames)``."""
        if self.modality == "video":
            return (3, self.frames, self.crop_size, self.crop_size)
        return (1, self.n_mels, self.time_frames)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"encoder spec has unknown field(s): {', '.join(unknown)}")
        values = dict(data)
        for key in ("feature_map", "mean", "std", "resize_size"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """Global average over every axis after the channel axis: ``B x C x ...`` -> ``B x C``."""
    return features.mean(dim=tuple(range(2, features.ndim)))


class Encoder(nn.Module):
    """Base class of every encoder: ``forward_features`` gives the last map, ``forward`` pools it."""

    spec: EncoderSpec | None = None
    encoder_name: str | None = None
    encoder_args: dict[str, Any] | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward_features (the base class is abstract)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_features(self.forward_features(x))

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim


def scaled_channels(channels: int, width: float) -> int:
    """Channel count after a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def check_width(width: float) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise UserError(f"width must be a positive number (e.g. 1.0, or 0.125 for a tiny model), got {width!r}")
    return float(width)


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    builder: Callable[..., Encoder]
    modality: str
    inputs: dict[str, Any]
    source: str = ""
    summary: str = ""
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, EncoderEntry] = {}


def register_encoder(name: str | None = None, *, modality: str, source: str = "", **inputs: Any):
    """Register ``builder(**options) -> Encoder`` under ``name`` with its default input contract.

    ``inputs`` are the :class:`EncoderSpec` input fields of the modality (all of them must be given);
    ``source`` names where those defaults come from (paper / official code).
    """
    if modality not in INPUT_FIELDS:
        raise ValueError(f"modality must be 'video' or 'audio', got {modality!r}")
    missing = sorted(set(INPUT_FIELDS[modality]) - set(inputs))
    extra = sorted(set(inputs) - set(INPUT_FIELDS[modality]))
    if missing or extra:
        raise ValueError(f"register_encoder: missing input fields {missing}, unknown {extra}")

    def decorate(builder: Callable[..., Encoder]) -> Callable[..., Encoder]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"encoder {key!r} is registered twice")
        doc = (inspect.getdoc(builder) or "").strip().splitlines()
        _REGISTRY[key] = EncoderEntry(
            name=key,
            builder=builder,
            modality=modality,
            inputs=dict(inputs),
            source=source,
            summary=doc[0] if doc else "",
            options=_builder_options(builder),
        )
        register_encoder_name(key, modality)  # valid in recipes from now on
        return builder

    return decorate


def _builder_options(builder: Callable[..., Any]) -> dict[str, Any]:
    options = {}
    for param in inspect.signature(builder).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        options[param.name] = None if param.default is param.empty else param.default
    return options


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_encoders(pattern: str | None = None, *, modality: str | None = None) -> list[str]:
    """Names of the registered encoders, optionally those matching a shell-style ``pattern`` and of one
    ``modality`` (``"video"`` / ``"audio"``). ``timm:<name>`` works too but is not listed.

    >>> list_encoders("r2*")
    ['r2plus1d_10', 'r2plus1d_18', 'r2plus1d_34']
    >>> list_encoders(modality="audio")
    ['audio_resnet18', 'audio_resnet9']
    """
    import fnmatch

    if modality is not None and modality not in INPUT_FIELDS:
        raise UserError(f"modality must be 'video' or 'audio', got {modality!r}")
    _load_builtins()
    return sorted(name for name, entry in _REGISTRY.items()
                  if modality in (None, entry.modality) and (pattern is None or fnmatch.fnmatchcase(name, pattern)))


def register_prefix(prefix: str, factory: Callable[[str, dict[str, Any]], Any]) -> None:
    """Encoders named ``<prefix><anything>`` are built on demand by ``factory(anything, overrides)``."""
    _PREFIXES[prefix] = factory
    if prefix not in RECIPE_PREFIXES:
        RECIPE_PREFIXES.append(prefix)


def _entry(name: str, overrides: dict[str, Any]) -> EncoderEntry:
    if not isinstance(name, str) or not name:
        raise UserError(f"encoder name must be a non-empty string, got {name!r}")
    _load_builtins()
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix):], overrides)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown encoder '{name}' (known: {known}; or timm:<any timm model>)")
    return _REGISTRY[name]


def encoder_options(name: str) -> dict[str, Any]:
    """Architecture options of ``name`` with their defaults, and its default input contract."""
    entry = _entry(name, {})
    return {"options": dict(entry.options), "inputs": dict(entry.inputs)}


def create_encoder(name: str, **overrides: Any) -> Encoder:
    """Build encoder ``name`` (random init; see :func:`list_encoders`, or ``timm:<model>``); ``overrides`` are
    input-contract fields (``frames``, ``crop_size``, ...) or architecture options (``width``, ...).

    >>> encoder = create_encoder("r2plus1d_18", width=0.25, frames=8)
    >>> encoder.spec.frames, encoder.spec.modality
    (8, 'video')
    """
    entry = _entry(name, overrides)
    input_names = INPUT_FIELDS[entry.modality]
    other_names = INPUT_FIELDS["audio" if entry.modality == "video" else "video"]
    inputs = dict(entry.inputs)
    options: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in input_names:
            inputs[key] = value
        elif key in other_names:
            raise UserError(f"'{key}' is an {('audio' if entry.modality == 'video' else 'video')} input "
                            f"setting; encoder '{name}' takes {entry.modality}")
        else:
            options[key] = value
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(entry.builder).parameters.values())
    if not accepts_any:
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            allowed = ", ".join(sorted(entry.options)) or "none"
            raise UserError(f"encoder '{name}' has no option {', '.join(map(repr, unknown))} "
                            f"(options: {allowed}; inputs: {', '.join(input_names)})")
    if entry.modality == "audio" and "time_frames" not in overrides and any(
        key in overrides for key in ("features", "sample_rate", "seconds", "win_seconds", "hop_seconds")
    ):
        inputs["time_frames"] = audio_frames(inputs["features"], inputs["seconds"], inputs["sample_rate"],
                                             inputs["win_seconds"], inputs["hop_seconds"])
    _check_inputs(name, entry.modality, inputs)
    model = entry.builder(**options)
    spec = _measure_spec(model, name, entry, inputs)
    model.spec = spec
    model.encoder_name = name
    model.encoder_args = dict(overrides)
    return model


def _check_inputs(name: str, modality: str, inputs: dict[str, Any]) -> None:
    positive = ("frames", "crop_size") if modality == "video" else ("n_mels", "time_frames")
    for key in positive:
        value = inputs[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UserError(f"encoder '{name}': {key} must be a positive integer, got {value!r}")
    if modality == "video":
        for key in ("mean", "std"):
            value = inputs[key]
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise UserError(f"encoder '{name}': {key} must be 3 numbers (one per RGB channel), got {value!r}")
            inputs[key] = tuple(float(v) for v in value)
        if isinstance(inputs.get("resize_size"), list):
            inputs["resize_size"] = tuple(inputs["resize_size"])


@contextlib.contextmanager
def _on_meta(model: nn.Module):
    """Temporarily replace every parameter and buffer of ``model`` by a meta tensor of the same shape."""
    originals = []
    for module in model.modules():
        for store in ("_parameters", "_buffers"):
            table = getattr(module, store)
            for key, tensor in table.items():
                if tensor is None or tensor.device.type == "meta":
                    continue
                originals.append((table, key, tensor))
                meta = torch.empty_like(tensor, device="meta")
                if store == "_parameters":
                    meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
                table[key] = meta
    try:
        yield
    finally:
        for table, key, tensor in originals:
            table[key] = tensor


def trace_features(model: Encoder, input_shape: tuple[int, ...],
                   count_flops: bool = False) -> tuple[tuple, int | None]:
    """Feature-map shape (without batch) and multiply-adds for one sample, computed on the meta device.

    Nothing is computed for real: parameters, buffers and the input are swapped for meta tensors while the
    model runs, so this is cheap for full-size models. Models that cannot run on meta tensors fall back to a
    real forward pass.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False) if count_flops else contextlib.nullcontext()
    try:
        with torch.no_grad():
            try:
                with _on_meta(model), counter:
                    out = model.forward_features(torch.empty((1, *input_shape), device="meta"))
            except (NotImplementedError, RuntimeError):
                device = next((p.device for p in model.parameters()), torch.device("cpu"))
                if device.type == "meta":
                    raise
                counter = FlopCounterMode(display=False) if count_flops else contextlib.nullcontext()
                with counter:
                    out = model.forward_features(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
    macs = counter.get_total_flops() // 2 if count_flops else None
    return tuple(out.shape[1:]), macs


def _measure_spec(model: Encoder, name: str, entry: EncoderEntry, inputs: dict[str, Any]) -> EncoderSpec:
    probe = EncoderSpec(name=name, modality=entry.modality, feature_dim=0, feature_map=(), source=entry.source,
                        **inputs)
    try:
        feature_map, _ = trace_features(model, probe.input_shape())
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"encoder '{name}' cannot take input {probe.input_shape()}: {first}") from None
    return dataclasses.replace(probe, feature_dim=int(feature_map[0]), feature_map=feature_map)


def describe_encoder(name: str, **overrides: Any) -> dict[str, Any]:
    """Spec, parameter count and GFLOPs (multiply-adds, one sample at the default input) of ``name``.

    The model is built on the meta device, so this costs no memory or compute even for large models.
    """
    try:
        with torch.device("meta"):
            model = create_encoder(name, **overrides)
    except (NotImplementedError, RuntimeError):
        model = create_encoder(name, **overrides)
    _, macs = trace_features(model, model.spec.input_shape(), count_flops=True)
    entry = _entry(name, overrides)
    return {
        "name": name,
        "modality": model.spec.modality,
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": round(macs / 1e9, 3) if macs is not None else None,
        "feature_dim": model.spec.feature_dim,
        "feature_map": list(model.spec.feature_map),
        "input_shape": list(model.spec.input_shape()),
        "summary": entry.summary,
        "options": {k: v for k, v in entry.options.items()},
        "args": dict(overrides),
        "spec": model.spec.to_dict(),
    }
