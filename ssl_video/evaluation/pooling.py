"""The pooling protocol: train pooling classifiers on per-video feature sequences and test them.

Protocol (written into every report):

* inputs: one ``[num_clips, F]`` sequence per video (:mod:`ssl_video.evaluation.features_io`) and a labels
  table. Videos listed in the labels but absent from the features are skipped (and counted).
* split: the labels CSV's ``split`` column when it has one; otherwise a seeded stratified split, 70%
  train / 30% test of every class (stratified on a video's first listed label; a class with a single
  video keeps it in train; ``numpy.random.default_rng(seed)``).
* model: pooling head -> FC -> BatchNorm -> [Context Gating] -> linear or MoE classifier ->
  [Context Gating] (:class:`ssl_video.models.pooling.PooledClassifier`).
* training: Adam, fixed epochs, mini-batches of padded sequences with masks; a sequence longer than
  ``max_clips`` is cut to a random ordered subset of ``max_clips`` clips in training and to evenly
  spaced clips in testing. The same seed initialises every head.
* multi-class: softmax cross-entropy, top-1 and top-5 accuracy; multi-label: binary cross-entropy,
  GAP@20 and mAP. The last epoch's model is tested (nothing is selected on the test split).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ssl_video.errors import UserError
from ssl_video.evaluation import metrics
from ssl_video.evaluation.features_io import FeatureSet, LabelTable
from ssl_video.models.pooling import list_pooling_heads

__all__ = [
    "PoolingData",
    "PoolingSettings",
    "ALL_HEADS",
    "stratified_split",
    "prepare_data",
    "clip_indices",
    "pad_batch",
    "build_classifier",
    "train_classifier",
    "predict",
    "score_predictions",
    "evaluate_heads",
    "run_pooling_eval",
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

    @property
    def dim(self) -> int:
        return self.train_x[0].shape[1]


@dataclass
class PoolingSettings:
    """Everything that defines a run besides the data (written into the report)."""

    clusters: int = 64
    gating: bool = True
    classifier: str = "auto"  # auto: MoE for multi-label, linear for multi-class
    hidden: int = 512
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_clips: int = 300
    seed: int = 0
    device: str = "auto"
    head_kwargs: dict = field(default_factory=dict)

    def classifier_for(self, multilabel: bool) -> str:
        if self.classifier == "auto":
            return "moe" if multilabel else "linear"
        return self.classifier


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


def prepare_data(features: FeatureSet, labels: LabelTable, multilabel: bool, seed: int = 0) -> PoolingData:
    """Join features and labels, choose the split, encode targets."""
    keep = [i for i, v in enumerate(labels.videos) if v in features.features]
    skipped = len(labels.videos) - len(keep)
    if not keep:
        example = next(iter(features.features))
        raise UserError(
            f"no video of the labels CSV has features (e.g. features have '{example}', labels have "
            f"'{labels.videos[0]}')"
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
    )


def clip_indices(num_clips: int, max_clips: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Which clips of a sequence to use: all, a random ordered subset (``rng``) or evenly spaced ones."""
    if max_clips is None or num_clips <= max_clips:
        return np.arange(num_clips)
    if rng is not None:
        return np.sort(rng.choice(num_clips, size=max_clips, replace=False))
    return np.unique(np.linspace(0, num_clips - 1, max_clips).round().astype(np.int64))


def pad_batch(
    seqs: Sequence[np.ndarray], max_clips: int | None = None, rng: np.random.Generator | None = None
):
    """Stack variable-length ``[n_i, F]`` sequences into ``x (B, L, F)`` (zero padded) and ``mask (B, L)``."""
    import torch

    chosen = [s[clip_indices(s.shape[0], max_clips, rng)] for s in seqs]
    length = max(s.shape[0] for s in chosen)
    x = np.zeros((len(chosen), length, chosen[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(chosen), length), dtype=bool)
    for i, s in enumerate(chosen):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def build_classifier(head: str, dim: int, num_classes: int, settings: PoolingSettings, multilabel: bool):
    """A :class:`PooledClassifier` for ``head`` with the run's settings."""
    from ssl_video.models.pooling import PooledClassifier, create_pooling_head, pooling_head_options

    try:
        clustered = pooling_head_options(head)["clustered"]
    except KeyError:
        from ssl_video.models.pooling import list_pooling_heads

        raise UserError(
            f"unknown head '{head}'; choose from {', '.join(list_pooling_heads())} or all"
        ) from None
    kwargs = dict(settings.head_kwargs.get(head, {}))
    if clustered:
        kwargs.setdefault("clusters", settings.clusters)
    if head == "transformer":
        kwargs.setdefault("heads", next(h for h in (4, 2, 1) if dim % h == 0))
    pool = create_pooling_head(head, dim, **kwargs)
    return PooledClassifier(
        pool,
        num_classes,
        hidden=settings.hidden,
        gating=settings.gating,
        classifier=settings.classifier_for(multilabel),
    )


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # BatchNorm needs two samples in training
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but CUDA is not available here")
    return device


def train_classifier(
    model,
    x: Sequence[np.ndarray],
    y: np.ndarray,
    settings: PoolingSettings,
    multilabel: bool,
    progress: bool = False,
    desc: str = "train",
) -> dict:
    """Train ``model`` in place; returns ``{"train_time_s", "final_loss"}``."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    device = _device(settings.device)
    model.to(device).train()
    optim = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    targets = torch.from_numpy(np.asarray(y))
    loss_value = float("nan")
    start = time.perf_counter()
    bar = tqdm(range(settings.epochs), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for _ in bar:
        total, count = 0.0, 0
        for idx in _batches(len(x), settings.batch_size, rng):
            xb, mb = pad_batch([x[i] for i in idx], settings.max_clips, rng)
            yb = targets[idx].to(device)
            logits = model(xb.to(device), mb.to(device))
            loss = (
                F.binary_cross_entropy_with_logits(logits, yb) if multilabel else F.cross_entropy(logits, yb)
            )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        loss_value = total / max(count, 1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"train_time_s": time.perf_counter() - start, "final_loss": loss_value}


def predict(model, x: Sequence[np.ndarray], settings: PoolingSettings, multilabel: bool) -> np.ndarray:
    """Scores ``(V, C)``: softmax probabilities (multi-class) or sigmoid probabilities (multi-label)."""
    import torch

    device = _device(settings.device)
    model.to(device).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), settings.batch_size):
            xb, mb = pad_batch(x[i : i + settings.batch_size], settings.max_clips)
            logits = model(xb.to(device), mb.to(device)).float()
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
        model = build_classifier(head, data.dim, len(data.classes), settings, data.multilabel)
        stats = train_classifier(
            model, data.train_x, data.train_y, settings, data.multilabel, progress, desc=head
        )
        scores = predict(model, data.test_x, settings, data.multilabel)
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
) -> dict:
    """Run the protocol; writes report.json/report.md/PNG into ``out_dir`` when given.

    Returns ``{"report": dict, "table": rows, "files": {kind: path}}``.
    """
    device = str(_device(settings.device))
    data = prepare_data(features, labels, multilabel, settings.seed)
    table = evaluate_heads(data, heads, settings, progress)
    metric = "gap@20" if multilabel else "top1"
    report = {
        "protocol": "pooling",
        **(sources or {}),
        "task": "multi-label" if multilabel else "multi-class",
        "metric": metric,
        "feature_dim": data.dim,
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
