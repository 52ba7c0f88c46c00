"""The pooling protocol: train pooling classifiers on per-video feature sequences and test them.

Protocol (written into every report):

* inputs: one ``[num_clips, F]`` sequence per video (:mod:`ssl_video.features.files`) and a labels
  table. Videos listed in the labels but absent from the features are skipped (and counted). Two streams:
  a second feature set (audio) for the same videos; a video needs both.
* or, from a dataset (:func:`run_pooling_on_dataset`): the per-clip features of the shared feature cache
  (:mod:`ssl_video.features.dataset`, ``clips`` uniformly spaced clips per video, the cache the linear
  probe uses), trained and tested on every official split; mean and standard deviation over splits.
* split: the labels CSV's ``split`` column when it has one; otherwise a seeded stratified split, 70%
  train / 30% test of every class (stratified on a video's first listed label; a class with a single
  video keeps it in train; ``numpy.random.default_rng(seed)``).
* model: pooling head -> FC -> BatchNorm -> [Context Gating] -> linear or MoE classifier ->
  [Context Gating] (:class:`ssl_video.models.heads.PooledClassifier`); two streams: one pooling head per
  stream (audio with ``audio_clusters``, default half the clusters), concatenated, then the same block
  (:class:`ssl_video.models.heads.TwoStreamClassifier`).
* training: Adam, fixed epochs, mini-batches of padded sequences with masks; a sequence longer than
  ``max_clips`` is cut to a random ordered subset of ``max_clips`` clips in training and to evenly
  spaced clips in testing. The same seed initialises every head.
* multi-class: softmax cross-entropy, top-1 and top-5 accuracy; multi-label: binary cross-entropy,
  GAP@20 and mAP. The last epoch's model is tested (nothing is selected on the test split).
* the official LOUPE / Youtube-8M-WILLOW / Attention Clusters behaviour is a set of named settings (input BN,
  BN gating, MoE probability gating, hidden FC with bias, MoE L2, NetFV global second order, sampling with
  replacement, per-tensor clipping, staircase lr decay, summed BCE and its form on probabilities, TF-slim batch
  norm numerics, TF's L2 normalisation floor, the official initial values, alpha/beta init, the tanh MLP head);
  ``preset: paper`` sets the published run (docs/FIDELITY.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ssl_video.device import resolve_device
from ssl_video.errors import UserError
from ssl_video.evaluation import metrics
from ssl_video.evaluation.settings import PoolingSettings
from ssl_video.features.files import FeatureSet
from ssl_video.features.labels import LabelTable
from ssl_video.models.pooling import list_pooling_heads

__all__ = [
    "PoolingData",
    "PoolingSettings",
    "ALL_HEADS",
    "stratified_split",
    "prepare_data",
    "clip_indices",
    "pad_batch",
    "classification_loss",
    "clip_each_gradient",
    "build_classifier",
    "train_classifier",
    "predict",
    "score_predictions",
    "evaluate_heads",
    "run_pooling_eval",
    "run_pooling_on_dataset",
    "write_pooling_report",
]

ALL_HEADS = tuple(list_pooling_heads())


@dataclass
class PoolingData:
    """Train/test sequences with targets: class indices ``(V,)`` or a 0/1 matrix ``(V, C)`` (multi-label)."""

    train_x: list[np.ndarray]
    train_y: np.ndarray
    test_x: list[np.ndarray]
    test_y: np.ndarray
    train_names: list[str]
    test_names: list[str]
    classes: list[str]
    multilabel: bool
    split: str
    skipped: int = 0
    train_audio: list[np.ndarray] | None = None  # second stream, aligned with train_x
    test_audio: list[np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return self.train_x[0].shape[1]

    @property
    def audio_dim(self) -> int | None:
        return None if self.train_audio is None else self.train_audio[0].shape[1]


def stratified_split(keys: Sequence[str], seed: int, train_fraction: float = 0.7) -> np.ndarray:
    """Boolean ``is_train`` per item: per key, a seeded shuffle and the first ``round(f * n)`` to train.

    Every key with at least two items keeps at least one in train and one in test.
    """
    rng = np.random.default_rng(seed)
    keys = list(keys)
    is_train = np.zeros(len(keys), dtype=bool)
    for key in sorted(set(keys)):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        rng.shuffle(idx)
        n = len(idx)
        n_train = n if n == 1 else min(max(int(round(train_fraction * n)), 1), n - 1)
        is_train[idx[:n_train]] = True
    return is_train


def prepare_data(
    features: FeatureSet, labels: LabelTable, multilabel: bool, seed: int = 0, audio: FeatureSet | None = None
) -> PoolingData:
    """Join features (and the audio stream's, when given) with labels, choose the split, encode targets."""
    keep = [
        i
        for i, v in enumerate(labels.videos)
        if v in features.features and (audio is None or v in audio.features)
    ]
    skipped = len(labels.videos) - len(keep)
    if not keep:
        example = next(iter(features.features))
        raise UserError(
            f"no video of the labels CSV has features{' in both streams' if audio is not None else ''} (e.g. "
            f"features have '{example}', labels have '{labels.videos[0]}')"
        )
    videos = [labels.videos[i] for i in keep]
    video_labels = [labels.labels[i] for i in keep]
    if not multilabel:
        for v, ls in zip(videos, video_labels):
            if len(ls) > 1:
                raise UserError(f"video '{v}' has {len(ls)} labels; pass --multilabel for multi-label data")
    classes = sorted({label for ls in video_labels for label in ls})
    index = {c: i for i, c in enumerate(classes)}
    if labels.splits is not None:
        is_train = np.array([labels.splits[i] == "train" for i in keep])
        split = "from the labels CSV"
    else:
        is_train = stratified_split([ls[0] for ls in video_labels], seed)
        split = f"stratified 70/30 on the first label, seed {seed}"
    if multilabel:
        y = np.zeros((len(videos), len(classes)), dtype=np.float32)
        for row, ls in enumerate(video_labels):
            y[row, [index[label] for label in ls]] = 1.0
    else:
        y = np.array([index[ls[0]] for ls in video_labels], dtype=np.int64)
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    if len(train) < 2 or len(test) < 1:
        raise UserError(f"need at least 2 training and 1 test video, got {len(train)} and {len(test)}")
    return PoolingData(
        train_x=[features.features[videos[i]] for i in train],
        train_y=y[train],
        test_x=[features.features[videos[i]] for i in test],
        test_y=y[test],
        train_names=[videos[i] for i in train],
        test_names=[videos[i] for i in test],
        classes=classes,
        multilabel=multilabel,
        split=split,
        skipped=skipped,
        train_audio=None if audio is None else [audio.features[videos[i]] for i in train],
        test_audio=None if audio is None else [audio.features[videos[i]] for i in test],
    )


def clip_indices(num_clips: int, max_clips: int | None, rng: np.random.Generator | None = None,
                 replacement: bool = False) -> np.ndarray:
    """Which clips of a sequence to use: all, a random ordered subset (``rng``) or evenly spaced ones.

    ``replacement``: exactly ``max_clips`` indices drawn uniformly with replacement, unordered (the official
    ``SampleRandomFrames``: ``floor(U[0, 1) * num_clips)``), whatever the length; needs ``rng``."""
    if replacement:
        if rng is None or max_clips is None:
            raise ValueError("sampling with replacement needs a generator and max_clips")
        return np.floor(rng.random(max_clips) * num_clips).astype(np.int64)
    if max_clips is None or num_clips <= max_clips:
        return np.arange(num_clips)
    if rng is not None:
        return np.sort(rng.choice(num_clips, size=max_clips, replace=False))
    return np.unique(np.linspace(0, num_clips - 1, max_clips).round().astype(np.int64))


def pad_batch(
    seqs: Sequence[np.ndarray], max_clips: int | None = None, rng: np.random.Generator | None = None,
    replacement: bool = False,
):
    """Stack variable-length ``[n_i, F]`` sequences into ``x (B, L, F)`` (zero padded) and ``mask (B, L)``."""
    import torch

    chosen = [s[clip_indices(s.shape[0], max_clips, rng, replacement)] for s in seqs]
    length = max(s.shape[0] for s in chosen)
    x = np.zeros((len(chosen), length, chosen[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(chosen), length), dtype=bool)
    for i, s in enumerate(chosen):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def build_classifier(
    head: str, dim: int, num_classes: int, settings: PoolingSettings, multilabel: bool, audio_dim: int | None = None
):
    """A :class:`PooledClassifier` for ``head`` with the run's settings; with ``audio_dim`` a
    :class:`TwoStreamClassifier` (one ``head`` per stream)."""
    import math

    from ssl_video.models.heads import PooledClassifier, TwoStreamClassifier
    from ssl_video.models.pooling import create_pooling_head, pooling_head_options

    try:
        clustered = pooling_head_options(head)["clustered"]
    except KeyError:
        from ssl_video.models.pooling import list_pooling_heads

        raise UserError(
            f"unknown head '{head}'; choose from {', '.join(list_pooling_heads())} or all"
        ) from None
    kwargs = dict(settings.head_kwargs.get(head, {}))
    if head == "transformer":
        common = dim if audio_dim is None else math.gcd(dim, audio_dim)
        kwargs.setdefault("heads", next(h for h in (4, 2, 1) if common % h == 0))
    if head == "netfv":
        kwargs.setdefault("second_order", settings.netfv_second_order)
    if head == "attention_clusters":
        kwargs.setdefault("shift_init", settings.attention_init)
    if pooling_head_options(head)["l2_eps"]:
        kwargs.setdefault("l2_eps", settings.l2_eps)
    options = {"hidden": settings.hidden, "gating": settings.gating, "classifier": settings.classifier_for(multilabel),
               "input_bn": settings.input_bn, "hidden_bn": settings.hidden_bn, "gating_bn": settings.gating_bn,
               "output_gating": settings.output_gating, "moe_gate_bias": settings.moe_gate_bias,
               "batch_norm_numerics": settings.batch_norm_numerics, "classifier_init": settings.classifier_init}
    if audio_dim is not None:
        clusters = kwargs.pop("clusters", settings.clusters)  # head_kwargs may set a head's own (paper: NetFV 128)
        return TwoStreamClassifier(dim, audio_dim, num_classes, head=head, clusters=clusters,
                                   audio_clusters=settings.audio_clusters, **options, **kwargs)
    if clustered:
        kwargs.setdefault("clusters", settings.clusters)
    pool = create_pooling_head(head, dim, **kwargs)
    return PooledClassifier(pool, num_classes, input_dim=dim, **options)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # BatchNorm needs two samples in training
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


def train_classifier(
    model,
    x: Sequence[np.ndarray],
    y: np.ndarray,
    settings: PoolingSettings,
    multilabel: bool,
    progress: bool = False,
    desc: str = "train",
    audio: Sequence[np.ndarray] | None = None,
) -> dict:
    """Train ``model`` in place (``audio``: the second stream's sequences, aligned with ``x``); returns
    ``{"train_time_s", "final_loss"}``."""
    import torch

    from ssl_video.console import progress as progress_counter

    device = resolve_device(settings.device)
    model.to(device).train()
    optim = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    targets = torch.from_numpy(np.asarray(y))
    loss_value = float("nan")
    start = time.perf_counter()
    seen = 0  # training examples before this step: the staircase lr decay counts them (official train.py)
    penalty = getattr(model, "l2_penalty", None) if settings.moe_l2 > 0 else None
    form = settings.multilabel_loss_form if multilabel else "logits"
    bar = progress_counter(settings.epochs, desc, "epoch", enabled=progress)
    for _ in range(settings.epochs):
        total, count = 0.0, 0
        for idx in _batches(len(x), settings.batch_size, rng):
            yb = targets[idx].to(device)
            outputs = _forward(model, [x[i] for i in idx], None if audio is None else [audio[i] for i in idx],
                               settings, rng, device, probabilities=form == "official")
            loss = classification_loss(outputs, yb, multilabel, settings.multilabel_loss, form)
            reg = penalty() if penalty is not None else None
            objective = loss if reg is None else loss + settings.moe_l2 * reg
            for group in optim.param_groups:
                group["lr"] = settings.lr * settings.lr_decay ** (seen // settings.lr_decay_examples)
            optim.zero_grad(set_to_none=True)
            objective.backward()
            if settings.clip_grad is not None:
                clip_each_gradient(model.parameters(), settings.clip_grad)
            optim.step()
            seen += len(idx)
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        loss_value = total / max(count, 1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update()
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"train_time_s": time.perf_counter() - start, "final_loss": loss_value}


def classification_loss(outputs, targets, multilabel: bool, reduction: str = "mean", form: str = "logits"):
    """Softmax cross-entropy of logits (multi-class), or binary cross-entropy averaged over every entry
    (``"mean"``) or summed over classes and averaged over videos (``"sum"``, the official ``CrossEntropyLoss``).

    ``form`` (multi-label): ``"logits"``: ``outputs`` are logits (BCE with logits); ``"official"``: ``outputs`` are
    probabilities and each entry is ``-[y log(p + 1e-5) + (1 - y) log(1 - p + 1e-5)]`` (WILLOW ``losses.py``,
    ``epsilon = 10e-6``), so that a probability near 0 or 1 keeps a gradient."""
    import torch
    import torch.nn.functional as F

    if not multilabel:
        return F.cross_entropy(outputs, targets)
    if form == "official":
        eps = 1e-5
        entries = -(targets * torch.log(outputs + eps) + (1 - targets) * torch.log(1 - outputs + eps))
    elif form == "logits":
        entries = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    else:
        raise ValueError(f"multilabel loss form must be 'logits' or 'official', got {form!r}")
    return entries.sum(dim=1).mean() if reduction == "sum" else entries.mean()


def clip_each_gradient(parameters, max_norm: float) -> None:
    """Scale each parameter's gradient to norm ``max_norm`` when above it, one tensor at a time (TF-slim
    ``create_train_op(clip_gradient_norm=...)``: ``clip_by_norm`` per variable, not one global norm)."""
    for p in parameters:
        if p.grad is not None:
            norm = p.grad.norm()
            if norm > max_norm:
                p.grad.mul_(max_norm / norm)


def _forward(model, x, audio, settings: PoolingSettings, rng, device, probabilities: bool = False):
    """Logits of one batch (``probabilities``: the model's probabilities): padded sequences and masks of one stream,
    or of two (video, audio)."""
    replacement = settings.clip_sampling == "with_replacement"
    xb, mb = pad_batch(x, settings.max_clips, rng, replacement)
    if audio is None:
        return model(xb.to(device), mb.to(device), probabilities=probabilities)
    ab, amb = pad_batch(audio, settings.max_clips, rng, replacement)
    return model(xb.to(device), ab.to(device), mb.to(device), amb.to(device), probabilities=probabilities)


def predict(
    model,
    x: Sequence[np.ndarray],
    settings: PoolingSettings,
    multilabel: bool,
    audio: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Scores ``(V, C)``: softmax probabilities (multi-class) or sigmoid probabilities (multi-label)."""
    import torch

    device = resolve_device(settings.device)
    model.to(device).eval()
    out = []
    # evenly spaced clips, or (with_replacement) a seeded draw as the official test-time sampling
    rng = np.random.default_rng([settings.seed, 1]) if settings.clip_sampling == "with_replacement" else None
    with torch.no_grad():
        for i in range(0, len(x), settings.batch_size):
            part = None if audio is None else audio[i : i + settings.batch_size]
            logits = _forward(model, x[i : i + settings.batch_size], part, settings, rng, device).float()
            out.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).cpu().numpy())
    return np.concatenate(out, axis=0)


def score_predictions(scores: np.ndarray, targets: np.ndarray, multilabel: bool) -> dict[str, float]:
    """Multi-label: ``gap@20`` and ``mAP``; multi-class: ``top1`` and ``top5`` accuracy."""
    if multilabel:
        return {
            "gap@20": metrics.global_average_precision(scores, targets, top_k=20),
            "mAP": metrics.mean_average_precision(scores, targets),
        }
    return {
        "top1": metrics.topk_accuracy(scores, targets, 1),
        "top5": metrics.topk_accuracy(scores, targets, 5),
    }


def evaluate_heads(
    data: PoolingData, heads: Sequence[str], settings: PoolingSettings, progress: bool = False
) -> list[dict]:
    """Train and test every head on the same data; one table row per head."""
    import torch

    from ssl_video.models.pooling import count_parameters

    rows = []
    for head in heads:
        torch.manual_seed(settings.seed)
        model = build_classifier(head, data.dim, len(data.classes), settings, data.multilabel, data.audio_dim)
        stats = train_classifier(
            model, data.train_x, data.train_y, settings, data.multilabel, progress, desc=head, audio=data.train_audio
        )
        scores = predict(model, data.test_x, settings, data.multilabel, audio=data.test_audio)
        row = {"head": head, **score_predictions(scores, data.test_y, data.multilabel)}
        row["parameters"] = count_parameters(model)
        row["train_time_s"] = round(stats["train_time_s"], 3)
        row["final_train_loss"] = stats["final_loss"]
        rows.append(row)
    return rows


def run_pooling_eval(
    features: FeatureSet,
    labels: LabelTable,
    heads: Sequence[str],
    settings: PoolingSettings,
    multilabel: bool = False,
    out_dir: str | Path | None = None,
    sources: dict | None = None,
    progress: bool = False,
    audio: FeatureSet | None = None,
) -> dict:
    """Run the protocol (two streams when ``audio`` is given); writes report.json/report.md/PNG into
    ``out_dir`` when given.

    Returns ``{"report": dict, "table": rows, "files": {kind: path}}``.
    """
    device = str(resolve_device(settings.device))
    data = prepare_data(features, labels, multilabel, settings.seed, audio)
    table = evaluate_heads(data, heads, settings, progress)
    metric = "gap@20" if multilabel else "top1"
    report = {
        "protocol": "pooling",
        **(sources or {}),
        "task": "multi-label" if multilabel else "multi-class",
        "metric": metric,
        "streams": "video" if audio is None else "video + audio (late fusion)",
        "feature_dim": data.dim,
        **({} if audio is None else {"audio_feature_dim": data.audio_dim}),
        "classes": len(data.classes),
        "train_videos": len(data.train_x),
        "test_videos": len(data.test_x),
        "skipped_videos_without_features": data.skipped,
        "split": data.split,
        **{k: v for k, v in asdict(settings).items() if k not in ("head_kwargs", "device")},
        "classifier": settings.classifier_for(multilabel),
        "device": device,
        "head_kwargs": settings.head_kwargs,
        "selection": "last epoch (nothing selected on test)",
    }
    files = {}
    if out_dir is not None:
        notes = [
            "Pooling heads trained on frozen per-video feature sequences (padded + masked batches), "
            "same seed, data and budget for every head; the last epoch is tested.",
        ]
        files = write_pooling_report(out_dir, report, table, metric, notes)
    return {"report": report, "table": table, "files": files}


def write_pooling_report(out_dir, report: dict, table: list[dict], metric: str, notes: Sequence[str]) -> dict:
    from ssl_video.evaluation.report import write_report

    columns = [
        "head",
        *[k for k in table[0] if k not in ("head", "parameters", "train_time_s", "final_train_loss")],
    ]
    columns += ["parameters", "train_time_s", "final_train_loss"]
    return write_report(
        out_dir,
        report,
        table,
        title="Pooling heads",
        columns=columns,
        label_column="head",
        plot_columns=[metric],
        notes=notes,
    )


def run_pooling_on_dataset(
    inputs, heads: Sequence[str], settings: PoolingSettings, progress: bool = False
) -> dict:
    """Pooling heads on a dataset's per-clip features, every requested split (multi-class, top-1/top-5).

    ``inputs`` is an :class:`~ssl_video.evaluation.runner.EvalInputs`: the clip sequences come from the shared
    feature cache (extracted once, the same entry the linear probe and retrieval use), each split's training
    videos train every head and its test videos score it. Writes ``inputs.out/report.{json,md}`` and a bar
    chart of the mean top-1 per head; returns ``{"report", "table", "files"}``.
    """
    from ssl_video.evaluation.runner import base_report, prepare_features, split_subset, split_summary

    layout, splits, encoder, protocol, table = prepare_features(inputs)
    results: dict[str, dict[str, dict]] = {head: {} for head in heads}
    for s in splits:
        train_x, train_y, train_ids = split_subset(layout, table, s, "train", table.clips)
        test_x, test_y, test_ids = split_subset(layout, table, s, "test", table.clips)
        if len(train_y) < 2 or len(test_y) == 0:
            raise UserError(f"split {s}: need at least 2 readable training videos and 1 test video")
        data = PoolingData(
            train_x=[np.asarray(x, dtype=np.float32) for x in train_x],
            train_y=train_y,
            test_x=[np.asarray(x, dtype=np.float32) for x in test_x],
            test_y=test_y,
            train_names=train_ids,
            test_names=test_ids,
            classes=layout.classes,
            multilabel=False,
            split=f"official split {s}",
        )
        for row in evaluate_heads(data, heads, settings, progress):
            results[row["head"]][s] = {**row, "train_videos": len(train_y), "test_videos": len(test_y)}
    rows, means, stds = [], {}, {}
    for head, by_split in results.items():
        means[head], stds[head] = split_summary(by_split, ["top1", "top5"])
        rows.append({
            "head": head,
            "top1": means[head]["top1"],
            "top1_std": stds[head]["top1"],
            "top5": means[head]["top5"],
            **{f"top1_split{s}": by_split[s]["top1"] for s in splits},
            "parameters": by_split[splits[0]]["parameters"],
            "train_time_s": round(sum(r["train_time_s"] for r in by_split.values()), 3),
            "final_train_loss": float(np.mean([r["final_train_loss"] for r in by_split.values()])),
        })
    report = base_report("pooling", inputs, layout, splits, encoder, protocol, table, {
        "video_feature": "sequence of the clips' pooled encoder outputs in time order (feature cache, float16)",
        "task": "multi-class", "metric": "top1", "split": "official splits (train -> test)",
        **{k: v for k, v in asdict(settings).items() if k not in ("device", "audio_clusters")},
        "classifier": settings.classifier_for(False),
        "selection": "last epoch (nothing selected on test)",
    })
    report.update({
        "splits": {s: {head: {k: results[head][s][k] for k in ("top1", "top5", "train_videos", "test_videos")}
                       for head in heads} for s in splits},
        "mean": means,
        "std": stds,
        "device": str(resolve_device(settings.device)),
    })
    notes = [
        f"Encoder: `{encoder.provenance.get('source') or encoder.provenance.get('architecture')}` "
        f"({encoder.provenance.get('init')}); videos listed {report['videos_listed']}, evaluated "
        f"{report['videos_evaluated']}, skipped {len(report['skipped'])}. Pooling heads trained on each split's "
        "training videos (frozen clip features, same seed and budget for every head), tested on its test videos; "
        "top-1/top-5 are means over splits.",
    ]
    files = write_pooling_report(inputs.out, report, rows, "top1", notes)
    return {"report": report, "table": rows, "files": files}
