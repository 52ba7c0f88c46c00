"""The protocol registry: every evaluation protocol, registered once, used by the CLI and by suites.

A :class:`Protocol` names its settings dataclass (loaded with :func:`ssl_video.config.from_dict`, so an
unknown key or a wrong type is a one-line error naming the key), the shared input groups it reads from
:class:`~ssl_video.evaluation.runner.EvalInputs` (``encoder``, ``dataset``, ``clip``, ``run``, ``cache``),
its few command-line flags (each setting one settings key) and one run function
``run(inputs, settings) -> report``. Every other setting is a dotted ``key=value`` override. The seed and
the device always come from the run group, never from the settings.

Importing this module loads neither torch nor matplotlib: run functions import their protocol lazily.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ssl_video.config import from_dict, parse_overrides
from ssl_video.errors import ConfigError, UserError
from ssl_video.evaluation.settings import (
    FinetuneSettings,
    PoolingEvalSettings,
    ProbeSettings,
    RetrievalSettings,
    TemporalSettings,
)

__all__ = ["Flag", "Protocol", "register_protocol", "get_protocol", "list_protocols", "load_settings",
           "settings_from_args", "make_inputs", "default_out", "split_lines", "split_metrics", "GROUPS"]

GROUPS = ("encoder", "dataset", "clip", "run", "cache")
RESERVED = ("seed", "device")  # run options (--seed, --device), never protocol settings


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one settings key; values are read as YAML scalars."""

    option: str
    key: str
    help: str
    kind: Literal["value", "list", "bool", "switch"] = "value"  # list: comma-separated; switch: store_true
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    settings: type
    groups: tuple[str, ...]
    run: Callable[[Any, Any], dict]  # (EvalInputs, settings) -> report
    lines: Callable[[dict], list[str]]  # what the CLI and suites print about a report
    metrics: Callable[[dict], dict]  # headline numbers of a report (one row of a suite's table)
    flags: tuple[Flag, ...] = ()
    overrides_key: str | None = None  # settings field receiving the dotted overrides (None: the settings)
    defaults: dict = field(default_factory=dict)  # EvalInputs values this protocol defaults differently
    inputs_required: bool = True  # --encoder and --dataset are required
    examples: tuple[str, ...] = ()
    notes: str = ""


_REGISTRY: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    if protocol.name in _REGISTRY:
        raise ValueError(f"protocol {protocol.name!r} is registered twice")
    unknown = set(protocol.groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"protocol {protocol.name!r}: unknown groups {sorted(unknown)}")
    _REGISTRY[protocol.name] = protocol
    return protocol


def list_protocols() -> list[Protocol]:
    return list(_REGISTRY.values())


def get_protocol(name: str, key: str | None = None) -> Protocol:
    if name not in _REGISTRY:
        message = f"unknown protocol '{name}' (known: {', '.join(_REGISTRY)})"
        raise ConfigError(key, message) if key else UserError(message)
    return _REGISTRY[name]


def load_settings(protocol: Protocol, data: dict | None, prefix: str = ""):
    """The protocol's settings from a mapping (suite entry, flags + overrides); every key checked."""
    data = dict(data or {})
    for key in RESERVED:
        if key in data:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(where, f"set by the run options (--{key}), not by the protocol settings")
    expand = getattr(protocol.settings, "expand_preset", None)
    if expand is not None:
        data = expand(data)
    settings = from_dict(protocol.settings, data, prefix)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def settings_from_args(protocol: Protocol, values: dict, overrides: list[str]):
    """Settings from flag values (``{key: value or None}``) and dotted ``key=value`` overrides."""
    data = {k: v for k, v in values.items() if v is not None}
    if protocol.overrides_key is not None:
        if overrides:
            data[protocol.overrides_key] = list(overrides)
    else:
        data = _merge(data, parse_overrides(overrides))
    return load_settings(protocol, data)


def _merge(flags: dict, overrides: dict) -> dict:
    both = sorted(set(flags) & set(overrides))
    if both:
        raise UserError(f"'{both[0]}' is given both as a flag and as an override")
    return {**flags, **overrides}


def make_inputs(protocol: Protocol, check_device: bool = True, **given):
    """:class:`EvalInputs` from the given values (``None``: the protocol's default, then the field's).

    The device is checked first (``check_device=False`` where the command runs elsewhere: a Slurm job)."""
    from ssl_video.evaluation.runner import EvalInputs

    values = {**protocol.defaults, **{k: v for k, v in given.items() if v is not None}}
    if "out" not in values and values.get("encoder"):
        values["out"] = default_out(protocol.name, values["encoder"], values.get("dataset", ""))
    values.setdefault("out", f"runs/eval/{protocol.name}")
    values.setdefault("dataset", "")
    values.setdefault("encoder", "")
    for key in ("clips", "frames", "fps", "resize", "crop", "batch_size", "workers"):
        value = values.get(key)
        if value is not None and (value < 0 or (value == 0 and key != "workers")):
            raise UserError(f"--{key.replace('_', '-')} must be positive, got {value}")
    if check_device:
        from ssl_video.device import resolve_device

        resolve_device(values.get("device", "auto"))  # before anything is read, cached or written

    return EvalInputs(**{k: v for k, v in values.items() if k in _EVAL_FIELDS})


def default_out(protocol: str, encoder: str, dataset: str = "") -> str:
    """``runs/eval/<protocol>/<encoder>-<dataset>`` (``<encoder>`` alone without a dataset: ``eval temporal``, a
    suite; the feature file's name for ``eval pooling --features``): one report directory per encoder and
    dataset, so that evaluating the next encoder never replaces the previous one's report."""
    name = Path(str(encoder).rstrip("/")).name or str(encoder)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"runs/eval/{protocol}/{safe}-{dataset}" if dataset else f"runs/eval/{protocol}/{safe}"


_EVAL_FIELDS = ("encoder", "dataset", "root", "videos", "split_dir", "splits", "encoder_args", "seed", "clips",
                "frames", "fps", "crop", "resize", "device", "batch_size", "workers", "cache_dir", "use_cache",
                "out", "progress")


# ---------------------------------------------------------------------------------------------- reports


def split_lines(report: dict) -> list[str]:
    """Per-split and mean lines of a report with ``splits`` and ``mean`` (probe, retrieval, fine-tune)."""
    keys = list(report["mean"])
    lines = [f"{report['protocol']['name']} on {report['protocol']['dataset']}: {report['videos_evaluated']} of "
             f"{report['videos_listed']} videos evaluated"
             + (f" ({len(report['skipped'])} skipped: see report.json)" if report["skipped"] else "")]
    for split, values in report["splits"].items():
        lines.append(f"  split {split}: " + "  ".join(f"{k} {values[k]:.4f}" for k in keys))
    lines.append("  mean:    " + "  ".join(f"{k} {report['mean'][k]:.4f} ± {report['std'][k]:.4f}" for k in keys))
    return lines


def split_metrics(report: dict) -> dict:
    std = report["std"].get("top1")
    return {**report["mean"], **({"std_top1": std} if std is not None else {}),
            "splits": ",".join(report["splits"]), "videos": f"{report['videos_evaluated']}/{report['videos_listed']}"}


# ---------------------------------------------------------------------------------------------- linear probe


def _run_linear_probe(inputs, settings):
    from ssl_video.evaluation.runner import run_linear_probe

    return run_linear_probe(inputs, dataclasses.replace(settings, seed=inputs.seed))


# ---------------------------------------------------------------------------------------------- retrieval


def _run_retrieval(inputs, settings: RetrievalSettings):
    from ssl_video.evaluation.runner import run_retrieval

    return run_retrieval(inputs, tuple(settings.ks))


# ---------------------------------------------------------------------------------------------- fine-tuning


def _run_finetune(inputs, settings):
    from ssl_video.evaluation.finetune import run_finetune

    return run_finetune(inputs, settings)


# ---------------------------------------------------------------------------------------------- pooling


def _run_pooling(inputs, settings: PoolingEvalSettings):
    from ssl_video.evaluation.pooling import run_pooling_eval, run_pooling_on_dataset

    heads, training = settings.head_names(), settings.training(inputs.seed, inputs.device)
    files_given = settings.features is not None or settings.labels is not None or settings.audio_features is not None
    if inputs.encoder:
        if files_given:
            raise UserError("give either --encoder with --dataset, or --features with --labels, not both")
        if not inputs.dataset:
            raise UserError("--encoder needs --dataset (and --root) to extract clip features from")
        if settings.multilabel:
            raise UserError("--multilabel applies to --features with a labels CSV (the datasets are multi-class)")
        result = run_pooling_on_dataset(inputs, heads, training, progress=inputs.progress)
    else:
        if settings.features is None or settings.labels is None:
            raise UserError("eval pooling needs --features PATH and --labels CSV, or --encoder E --dataset NAME")
        from ssl_video.features.files import read_features
        from ssl_video.features.labels import read_labels_csv

        audio = read_features(settings.audio_features) if settings.audio_features is not None else None
        sources = {k: str(getattr(settings, k)) for k in ("features", "labels", "audio_features")
                   if getattr(settings, k) is not None}
        result = run_pooling_eval(read_features(settings.features), read_labels_csv(settings.labels), heads, training,
                                  multilabel=settings.multilabel, out_dir=inputs.out, sources=sources,
                                  progress=inputs.progress, audio=audio)
    return {**result["report"], "table": result["table"], "files": {k: str(v) for k, v in result["files"].items()}}


def _pooling_lines(report: dict) -> list[str]:
    from ssl_video.evaluation.report import markdown_table

    if "splits" in report:
        head = (f"pooling on {report['protocol']['dataset']}: {report['videos_evaluated']} of "
                f"{report['videos_listed']} videos, splits {', '.join(report['splits'])} (mean over splits)")
    else:
        head = (f"{report['task']}: {report['classes']} classes, {report['train_videos']} train / "
                f"{report['test_videos']} test videos ({report['split']})")
    return [head, markdown_table(report["table"])]


def _pooling_metrics(report: dict) -> dict:
    metric = report.get("metric", "top1")
    row = {f"{r['head']} {metric}": r[metric] for r in report["table"]}
    if "splits" in report:
        row.update(splits=",".join(report["splits"]), videos=f"{report['videos_evaluated']}/{report['videos_listed']}")
    return row


# ---------------------------------------------------------------------------------------------- temporal


def _run_temporal(inputs, settings: TemporalSettings):
    from ssl_video.evaluation.temporal import TemporalInputs, run_temporal

    root = Path(inputs.root) if inputs.root else None

    def where(value: str | None, default: str | None, what: str) -> str | None:
        if value is None and root is not None and default is not None:
            value = default
        if value is None:
            return None
        path = root / value if root is not None and not Path(value).is_absolute() else Path(value)
        if not path.exists():
            raise UserError(f"temporal: {what} not found: {path}")
        return str(path)

    val = "val_groundtruth.csv" if root is not None and (root / "val_groundtruth.csv").is_file() else None
    gt = where(settings.gt, "train_groundtruth.csv", "ground-truth CSV")
    videos = where(settings.videos, "videos", "videos directory")
    if gt is None or videos is None:
        raise UserError("eval temporal needs --gt CSV and --videos DIR")
    return run_temporal(TemporalInputs(
        encoder=inputs.encoder, gt=gt, videos=videos, test_gt=where(settings.test_gt, val, "test ground-truth CSV"),
        test_fraction=settings.test_fraction, clips_per_segment=inputs.clips, encoder_args=inputs.encoder_args,
        frames=inputs.frames, fps=inputs.fps, resize=inputs.resize, crop=inputs.crop, device=inputs.device,
        batch_size=inputs.batch_size, workers=inputs.workers, seed=inputs.seed, out=inputs.out,
        progress=inputs.progress))


def _temporal_lines(report: dict) -> list[str]:
    return [f"temporal: fg/bg probe top-1 {report['fg_bg_top1']:.4f} (balanced {report['balanced_accuracy']:.4f}) "
            f"on {report['test_clips']} test clips ({report['train_clips']} training clips)"
            + (f"; {len(report['skipped'])} unreadable video(s) skipped" if report["skipped"] else "")]


def _temporal_metrics(report: dict) -> dict:
    return {k: report[k] for k in ("fg_bg_top1", "balanced_accuracy", "test_clips")}


# ---------------------------------------------------------------------------------------------- the registry

_FEATURES = ("encoder", "dataset", "clip", "run", "cache")

register_protocol(Protocol(
    "linear-probe", "Linear probe on frozen features, per split (UCF101/HMDB51).", ProbeSettings, _FEATURES,
    _run_linear_probe, split_lines, split_metrics,
    examples=("--encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3",
              "--encoder r2plus1d_18 --encoder-args width=0.25 --dataset synthetic --root data/synth",
              "--encoder encoders/x --dataset hmdb51 --videos /d/hmdb51_org --split-dir /d/splits holdout_fraction=0.2"),
    notes="Features are extracted once per video (--clips uniformly spaced clips, centre crop, encoder in eval "
          "mode), cached on disk and reused by every split and later run. Settings: l2_grid, holdout_fraction, "
          "max_iter. Writes OUT/report.json, OUT/report.md, OUT/splits.png and OUT/confused_pairs.png."))

register_protocol(Protocol(
    "retrieval", "Video retrieval: test queries, train gallery, recall@k.", RetrievalSettings, _FEATURES,
    _run_retrieval, split_lines, split_metrics,
    flags=(Flag("--ks", "ks", "comma-separated k values (default 1,5,10,20)", "list", "K,K"),),
    examples=("--encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1",
              "--encoder r3d_18 --dataset synthetic --root data/synth --ks 1,5,10,20"),
    notes="Test videos are the queries, training videos the gallery; cosine similarity with faiss; a hit at k "
          "is a same-class video among the k nearest. Uses the same feature cache as the linear probe."))

register_protocol(Protocol(
    "finetune", "Fine-tune end to end per split and test with clip x crop averaging (UCF101/HMDB51).",
    FinetuneSettings, ("encoder", "dataset", "clip", "run"), _run_finetune, split_lines, split_metrics,
    flags=(Flag("--recipe", "recipe", "recipe fragment (YAML) over the STiCA/GDT defaults", metavar="FILE"),
           Flag("--crops", "crops", "spatial crops per test clip: 1 centre, 3 along the long side (default 3)"),
           Flag("--average", "average", "averaged over the test views (default softmax)",
                choices=("softmax", "logits"))),
    overrides_key="overrides",
    examples=("--encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3",
              "--encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51 --frames 32 --fps 30 --resize 128 "
              "--crop 128 --out runs/eval/ft_hmdb_random",
              "--encoder r3d_18 --encoder-args width=0.25 --dataset synthetic --root data/synth trainer.epochs=2 "
              "optim.lr=0.01 optim.milestones=[] trainer.tensorboard=false"),
    notes="Per split, the encoder plus a linear classifier is trained end to end on the training list (the "
          "`finetune` method through the shared training loop, run directory OUT/split_<s>/), then every test "
          "video is scored by averaging the softmax over --clips uniformly spaced clips x --crops crops. The "
          "training recipe is ssl_video/evaluation/finetune_recipe.yaml (the STiCA/GDT protocol), then --recipe, "
          "then KEY=VALUE overrides (the keys of `ssl-video pretrain`). Rerunning the same command resumes an "
          "interrupted split and reuses finished ones. exit codes: 0 done; 2 bad arguments; 3 stopped by "
          "SIGTERM/SIGUSR2 (rerun to resume); 4 the loss became NaN/inf."))

register_protocol(Protocol(
    "pooling", "Train and test pooling classifiers (NetVLAD family, Attention Clusters, transformer, avg/max, "
    "LSTM/GRU) on per-video feature sequences.", PoolingEvalSettings, _FEATURES, _run_pooling, _pooling_lines,
    _pooling_metrics,
    flags=(Flag("--head", "heads", "pooling head(s), comma separated: netvlad, netrvlad, netfv, netbow, "
                "attention_clusters, attention_clusters_noshift, transformer, avg, max, lstm, gru; or all "
                "(default netvlad)", "list", "H,H"),
           Flag("--features", "features", "an .h5 feature file or a directory of .npy files (instead of "
                "--encoder)", metavar="PATH"),
           Flag("--labels", "labels", "labels CSV: video,label[,label...] (header and split optional)", metavar="CSV"),
           Flag("--audio-features", "audio_features", "second stream (audio) for two-stream heads", metavar="PATH"),
           Flag("--multilabel", "multilabel", "multi-label: BCE, GAP@20 and mAP", "switch")),
    inputs_required=False,
    examples=("--features feats.h5 --labels labels.csv --head all --out runs/eval/pooling",
              "--features feats_dir/ --labels labels.csv --head netvlad clusters=32 gating=false",
              "--features yt.h5 --labels yt.csv --multilabel --head netvlad,avg epochs=10",
              "--features rgb.h5 --audio-features audio.h5 --labels labels.csv --head netvlad",
              "--encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3 --head all"),
    notes="features: one .h5 file (a [num_clips, F] dataset per video) or a directory of <video>.npy arrays, as "
          "written by `ssl-video extract`; labels: CSV rows video,label[,label...], a `split` column (train/test) "
          "fixes the split, otherwise a seeded stratified 70/30 split. --encoder instead pools --clips cached clip "
          "features per video of --dataset on its official splits. Settings (KEY=VALUE): clusters, "
          "audio_clusters, gating, classifier, hidden, epochs, lr, weight_decay, batch_size (the heads'), "
          "max_clips. Writes OUT/report.json, OUT/report.md and a PNG bar chart."))

register_protocol(Protocol(
    "temporal", "Temporal sensitivity: foreground/background linear probe on clip features of untrimmed videos "
    "(TSP ground truth).", TemporalSettings, ("encoder", "clip", "run"), _run_temporal, _temporal_lines,
    _temporal_metrics,
    flags=(Flag("--gt", "gt", "TSP ground-truth CSV (training clips of the probe)", metavar="CSV"),
           Flag("--test-gt", "test_gt", "TSP ground-truth CSV of the test clips", metavar="CSV"),
           Flag("--videos", "videos", "directory holding the CSVs' filenames", metavar="DIR"),
           Flag("--test-fraction", "test_fraction", "videos held out without --test-gt (default 0.3)")),
    defaults={"clips": 5, "batch_size": 16},
    examples=("--encoder encoders/tsp --gt anet/val_groundtruth.csv --videos /data/anet/videos",
              "--encoder encoders/tac --gt data/untrimmed/train_groundtruth.csv --test-gt "
              "data/untrimmed/val_groundtruth.csv --videos data/untrimmed/videos --out runs/eval/temporal_tac"),
    notes="--clips evenly spaced clips in every segment of the ground-truth CSV (default 5; centre crop, encoder "
          "in eval mode); a logistic regression tells action (foreground) from background clips. Without "
          "--test-gt a seeded --test-fraction of the videos is held out. Writes OUT/report.json, OUT/report.md."))
