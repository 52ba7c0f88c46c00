"""Encoders in and out of files, and the one answer to "which encoder is this?".

Exported encoder (``native`` format), one directory per encoder:

* ``model.safetensors``: the backbone's state dict, no prefix, no heads, no optimizer state;
* ``config.json``: architecture name and constructor arguments, the :class:`EncoderSpec` (input contract),
  provenance (recipe, step, git revision, package version, source) and any evaluation results known.

``torchvision`` format: ``<arch>.pth``, a plain state dict that ``torchvision.models.video.<arch>()``
loads with ``strict=False`` reporting only the classifier as missing (``fc.*``, or ``classifier.1.*`` for
S3D), plus the same ``config.json``. Nothing is ever unpickled: safetensors, or ``weights_only=True``.

:func:`resolve_encoder` is the single entry point from an encoder reference (a zoo name, or an exported
encoder directory / its ``config.json``) to a model with its input contract and provenance; every command,
method and evaluation resolves encoders through it. Training checkpoints become encoder directories in
:mod:`ssl_video.export`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_video.errors import UserError, one_line
from ssl_video.files import check_output_dir, write_atomic, write_json, write_text

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "TORCHVISION_ARCHS",
    "ResolvedEncoder",
    "resolve_encoder",
    "is_encoder_directory",
    "weights_hash",
    "save_encoder",
    "save_torchvision",
    "torchvision_model",
    "load_encoder",
    "read_encoder_config",
    "check_state_dict",
    "MODEL_CARD",
    "model_card",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CARD = "README.md"
FORMAT_NAME = "ssl_video.encoder"
FORMAT_VERSION = 1
# architectures whose parameter names/shapes equal torchvision's: arch -> (torchvision builder, classifier keys)
TORCHVISION_ARCHS = {
    "r2plus1d_18": ("torchvision.models.video.r2plus1d_18()", ("fc.weight", "fc.bias")),
    "r3d_18": ("torchvision.models.video.r3d_18()", ("fc.weight", "fc.bias")),
    "mc3_18": ("torchvision.models.video.mc3_18()", ("fc.weight", "fc.bias")),
    "s3d": ("torchvision.models.video.s3d()", ("classifier.1.weight", "classifier.1.bias")),
    "r2plus1d_34": (
        "torchvision.models.video.resnet.VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)",
        ("fc.weight", "fc.bias"),
    ),
}



def _names(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------- writing


def _encoder_config(model, provenance, results, extra, fmt: str, weights: str) -> dict[str, Any]:
    from ssl_video.version import __version__

    if model.spec is None or model.encoder_name is None:
        raise UserError("only encoders built with ssl_video.create_encoder can be exported")
    spec = model.spec.to_dict()
    spec["source"] = _trained_source(provenance or {}, extra or {}, spec.get("source") or "")
    config = {
        "format": FORMAT_NAME if fmt == "native" else "torchvision",
        "format_version": FORMAT_VERSION,
        "architecture": model.encoder_name,
        "args": dict(model.encoder_args or {}),
        "weights": weights,
        "params": sum(p.numel() for p in model.parameters()),
        "spec": spec,
        "provenance": {**(provenance or {}), "exported_with": __version__},
        "results": results or {},
    }
    config.update(extra or {})
    return config



def _trained_source(provenance: dict, extra: dict, defaults: str) -> str:
    """What the exported weights are: the training run (method, recipe, step) or the imported file; the
    zoo's own ``source`` (where the default input contract comes from) follows."""
    config = extra.get("training_config") or {}
    if provenance.get("init") == "imported":
        what = f"imported from {Path(str(provenance.get('source', '?'))).name} ({provenance.get('format')} format"
        what += f", sha256 {str(provenance['sha256'])[:12]})" if provenance.get("sha256") else ")"
    elif config or provenance.get("step") is not None:
        method = config.get("method")
        name = config.get("name") or provenance.get("recipe") or "?"
        dataset = (config.get("data") or {}).get("dataset")
        what = f"{method + ' ' if method else ''}training, recipe {name}" + (f" on {dataset}" if dataset else "")
        what += f", step {provenance.get('step')}"
    else:
        return defaults
    return f"{what}. Zoo defaults of the architecture: {defaults}" if defaults else what


def model_card(config: dict[str, Any]) -> str:
    """``README.md`` beside the weights: YAML front matter (``library_name``, ``tags``, ... as model hubs read
    it), then architecture, input contract, training recipe and data, steps and any evaluation numbers."""
    import yaml

    spec, provenance = config.get("spec") or {}, config.get("provenance") or {}
    training = config.get("training_config") or {}
    method = training.get("method")
    dataset = (training.get("data") or {}).get("dataset")
    tags = ["ssl_video", spec.get("modality", "video"), config["architecture"]]
    tags += [t for t in (method, "self-supervised" if method in ("stica",) else None) if t]
    front = {"library_name": "ssl_video", "pipeline_tag": "feature-extraction", "tags": tags}
    if dataset and dataset not in ("synthetic", "folder"):
        front["datasets"] = [dataset]
    if config.get("results"):
        front["model-index"] = [{"name": config["architecture"], "results": [
            {"task": {"type": name}, "metrics": _card_metrics(report)} for name, report in config["results"].items()]}]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {config['architecture']} ({config.get('role', spec.get('modality', ''))} encoder)", "",
             spec.get("source", ""), "",
             "## Architecture", "",
             f"- `{config['architecture']}` with arguments `{json.dumps(config.get('args') or {})}`",
             f"- {config.get('params', 0):,} parameters; features: {spec.get('feature_dim')}-d, map "
             f"{' x '.join(str(d) for d in spec.get('feature_map') or [])}", "",
             "## Input contract", "", "| field | value |", "|---|---|"]
    for key in ("frames", "fps", "resize_size", "crop_size", "mean", "std", "features", "sample_rate", "seconds",
                "n_mels", "n_fft", "win_seconds", "hop_seconds", "time_frames"):
        if spec.get(key) is not None:
            lines.append(f"| {key} | {spec[key]} |")
    lines += ["", "## Training", ""]
    if training:
        lines += [f"- method: `{method}`, recipe `{training.get('name')}`"
                  + (f" (`{provenance['recipe']}`)" if provenance.get("recipe") else ""),
                  f"- data: `{dataset}`" + (f", split {training['data'].get('split')}" if dataset else ""),
                  f"- steps: {provenance.get('step')}"
                  + (f" (batch {training['data'].get('batch_size')} per process)" if training.get("data") else ""),
                  f"- optimizer: {json.dumps({k: (training.get('optim') or {}).get(k) for k in ('name', 'lr', 'schedule')})}",
                  f"- code: ssl_video {provenance.get('version')} (git {provenance.get('git_revision')})"]
    elif provenance.get("init") == "imported":
        lines.append(f"- imported from `{Path(str(provenance.get('source'))).name}` ({provenance.get('format')}, "
                     f"sha256 `{provenance.get('sha256')}`)")
    else:
        lines.append("- no training record")
    lines += ["", "## Evaluation", ""]
    if config.get("results"):
        lines += ["| report | metrics |", "|---|---|"]
        lines += [f"| {name} | {', '.join(f'{k} {v:.4g}' for k, v in _card_metrics_plain(report).items())} |"
                  for name, report in config["results"].items()]
    else:
        lines.append("No evaluation results were recorded with these weights.")
    lines += ["", "## Use", "", "```python", "import ssl_video", "",
              "encoder = ssl_video.load_encoder(\".\")  # this directory",
              "clips = ssl_video.read_clips(\"video.mp4\", encoder)  # decoded per the input contract",
              "features = encoder(clips)", "```", ""]
    return "\n".join(lines)


def _card_metrics_plain(report: Any) -> dict[str, float]:
    mean = report.get("mean") if isinstance(report, dict) else None
    source = mean if isinstance(mean, dict) else (report if isinstance(report, dict) else {})
    return {k: float(v) for k, v in source.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _card_metrics(report: Any) -> list[dict[str, Any]]:
    return [{"type": k, "value": v} for k, v in _card_metrics_plain(report).items()]


def _plain_state_dict(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


def save_encoder(model, out: str | Path, provenance: dict[str, Any] | None = None,
                 results: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (built by ``create_encoder``) as ``out/config.json`` + ``out/model.safetensors``."""
    from safetensors.torch import save_file

    out = check_output_dir(out, "encoder directory")
    out.mkdir(parents=True, exist_ok=True)
    config = _encoder_config(model, provenance, results, extra, "native", WEIGHTS_FILE)
    metadata = {"format": FORMAT_NAME, "architecture": model.encoder_name,
                "args": json.dumps(config["args"], default=str)}
    state = _plain_state_dict(model)
    write_atomic(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    write_json(out / CONFIG_FILE, config)
    write_text(out / MODEL_CARD, model_card(config))
    return out


def save_torchvision(model, out: str | Path, provenance: dict[str, Any] | None = None,
                     results: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out/<arch>.pth``, a state dict for torchvision's model of the same architecture."""
    name = model.encoder_name
    if name not in TORCHVISION_ARCHS:
        raise UserError(f"'{name}' has no torchvision counterpart "
                        f"(torchvision format: {', '.join(TORCHVISION_ARCHS)})")
    width = (model.encoder_args or {}).get("width", 1.0)
    if width != 1:
        raise UserError(f"torchvision format needs width=1 (torchvision's models have fixed widths), got {width}")
    args = model.encoder_args or {}
    if args.get("frame_diff"):
        raise UserError("torchvision format cannot hold frame_diff=True (torchvision's stems take RGB only)")
    if args.get("separable_mid") == "conv":
        raise UserError("torchvision format cannot hold separable_mid='conv' (each (2+1)D conv with its own hidden "
                        "width, as in the TSP and IG65M R(2+1)D-34): torchvision's Conv2Plus1D gives the two convs "
                        "of a block one width; export in the default format instead")
    out = check_output_dir(out, "encoder directory")
    out.mkdir(parents=True, exist_ok=True)
    builder, classifier = TORCHVISION_ARCHS[name]
    weights = f"{name}.pth"
    config = _encoder_config(model, provenance, results, extra, "torchvision", weights)
    load = (f"model = {builder}; model.load_state_dict(torch.load('{weights}', weights_only=True), "
            f"strict=False)  # only {', '.join(classifier)} stay untrained")
    bn = {k: args[k] for k in ("bn_eps", "bn_momentum") if args.get(k) is not None}
    if bn:  # not in a state dict: the reader sets them
        load += ("; then on every torch.nn.BatchNorm3d: "
                 + ", ".join(f"m.{k[3:]} = {v}" for k, v in bn.items()) + " (as trained)")
    config["torchvision"] = {"builder": builder, "missing_keys": list(classifier), "load": load}
    state = _plain_state_dict(model)
    write_atomic(out / weights, lambda tmp: torch.save(state, tmp))
    write_json(out / CONFIG_FILE, config)
    write_text(out / MODEL_CARD, model_card(config))
    return out


def torchvision_model(name: str):
    """torchvision's model with the architecture of zoo encoder ``name`` (random init, nothing downloaded)."""
    from torchvision.models import video as tv

    if name == "r2plus1d_34":
        from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

        return VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)
    if name not in TORCHVISION_ARCHS:
        raise UserError(f"'{name}' has no torchvision counterpart")
    return getattr(tv, name)(weights=None)


# ---------------------------------------------------------------------------------------------- loading


def check_state_dict(model, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise a one-line UserError naming missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es) (file vs model): {_names(wrong, 3)}")
    raise UserError(f"{what} does not fit the architecture: " + "; ".join(parts))


def read_encoder_config(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(directory, config)`` of an exported encoder (a directory, or a file inside it)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.exists():
        raise UserError(f"no such encoder directory: {path}")
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(f"{directory} has no {CONFIG_FILE} "
                        "(export an encoder with: ssl-video export RUN --out DIR)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_path} is not valid JSON: {one_line(exc)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise UserError(f"{config_path} does not name an architecture (not an exported ssl_video encoder)")
    if not isinstance(config.get("args", {}), dict):
        raise UserError(f"{config_path}: 'args' must be a mapping of constructor arguments")
    return directory, config


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise UserError(f"missing weights file {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as exc:  # safetensors raises SafetensorError and others for damaged files
            raise UserError(f"{file} is corrupt or truncated "
                            f"(not a readable safetensors file: {one_line(exc)})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{file} is corrupt or truncated "
                        f"(cannot be read as a state dict: {one_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{file} is not a state dict of tensors")
    return state


def load_encoder(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild an exported encoder and strict-load its weights; returned in eval mode.

    >>> encoder = load_encoder("encoders/x")            # doctest: +SKIP
    >>> encoder.spec.input_shape()                      # doctest: +SKIP
    (3, 16, 112, 112)

    Every problem (missing or damaged files, unknown architecture, weights of another architecture) is a
    :class:`~ssl_video.errors.UserError` with one line of explanation.
    """
    from ssl_video.models.registry import create_encoder

    directory, config = read_encoder_config(path)
    name = config["architecture"]
    try:
        model = create_encoder(name, **config.get("args", {}))
    except UserError as exc:
        raise UserError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / Path(str(config.get("weights") or WEIGHTS_FILE)).name
    state = _read_weights(weights)
    check_state_dict(model, state, f"{weights} (architecture '{name}')")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------- resolving


def weights_hash(model: torch.nn.Module, architecture: str = "") -> str:
    """sha256 of the architecture name and every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(architecture.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class ResolvedEncoder:
    """An encoder reference made concrete: the model (eval mode), its architecture name, where it came from."""

    model: torch.nn.Module
    name: str
    provenance: dict[str, Any]
    is_directory: bool
    _weights_hash: str | None = field(default=None, repr=False)

    @property
    def weights_hash(self) -> str:
        """:func:`weights_hash` of the model, computed on first use (then kept)."""
        if self._weights_hash is None:
            self._weights_hash = weights_hash(self.model, self.name)
        return self._weights_hash


def is_encoder_directory(ref: str | Path) -> bool:
    """Whether ``ref`` names an exported encoder (its directory or its ``config.json``), not a zoo name."""
    path = Path(ref)
    return path.is_dir() or (path.exists() and path.name == CONFIG_FILE)


def _args_key(key: str) -> str:
    return f"{key}-args" if key.startswith("--") else f"{key}_args"


def _check_modality(model, ref, modality: str, key: str) -> None:
    found = model.spec.modality if model.spec is not None else None
    if found == modality:
        return
    article = "an" if modality[0] in "aeiou" else "a"
    if found is None:
        raise UserError(f"{key}: '{ref}' has no input contract; this needs {article} {modality} encoder")
    found_article = "an" if found[0] in "aeiou" else "a"
    raise UserError(f"{key}: '{ref}' is {found_article} {found} encoder; this needs {article} {modality} encoder")


def resolve_encoder(ref: str | Path, args: dict[str, Any] | None = None, *, defaults: dict[str, Any] | None = None,
                    seed: int | None = None, modality: str | None = None, key: str = "encoder") -> ResolvedEncoder:
    """The encoder ``ref`` names, in eval mode, with its provenance.

    ``ref`` is an exported encoder directory (or its ``config.json``), rebuilt by :func:`load_encoder` (it
    carries its own constructor arguments: a non-empty ``args`` is refused, ``defaults`` are ignored), or a
    zoo name, built by ``create_encoder(ref, **{**defaults, **args})`` at random init (after
    ``torch.manual_seed(seed)`` when ``seed`` is given). ``modality`` (``"video"`` / ``"audio"``) is checked.
    Errors are one-line :class:`UserError` messages naming ``key`` (the option or config key that gave ``ref``).
    """
    from ssl_video.models.registry import create_encoder

    if is_encoder_directory(ref):
        if args:
            raise UserError(f"{_args_key(key)} applies to zoo names only (an exported encoder carries its own)")
        _, config = read_encoder_config(ref)
        model = load_encoder(ref)
        name = config["architecture"]
        provenance = {"source": str(ref), "init": "exported", **config}
        directory = True
    else:
        ref = str(ref)
        if "/" in ref or ref.endswith(".json"):
            raise UserError(f"{key}: encoder not found: {ref} (give an exported encoder directory or a zoo name)")
        if seed is not None:
            torch.manual_seed(seed)
        merged = {**(defaults or {}), **(args or {})}
        model = create_encoder(ref, **merged)
        name = ref
        provenance = {"architecture": ref, "args": dict(merged), "init": "random", "seed": seed,
                      "spec": model.spec.to_dict() if model.spec else None}
        directory = False
    if modality is not None:
        _check_modality(model, ref, modality, key)
    return ResolvedEncoder(model=model.eval(), name=name, provenance=provenance, is_directory=directory)
