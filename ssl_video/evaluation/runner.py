"""Run a feature-based protocol (linear probe, retrieval) on a dataset and write its report.

Shared steps: parse the dataset layout, resolve the encoder (exported directory or zoo name), extract
(or reuse cached) features for every listed video once, then score each requested split. Every setting
goes into ``report.json``; skipped videos are counted and named, never silently dropped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ssl_video.errors import UserError
from ssl_video.evaluation.linear import ProbeSettings, probe_split
from ssl_video.evaluation.plots import confused_pairs_chart, split_bars
from ssl_video.evaluation.report import write_report
from ssl_video.evaluation.retrieval import retrieval_recall
from ssl_video.features.dataset import extract_features
from ssl_video.features.protocol import ClipProtocol
from ssl_video.models.io import resolve_encoder

__all__ = ["EvalInputs", "run_linear_probe", "run_retrieval", "resolve_inputs", "prepare_features", "split_subset",
           "split_summary", "base_report", "write_split_report"]


@dataclass
class EvalInputs:
    encoder: str
    dataset: str
    root: str | None = None
    videos: str | None = None
    split_dir: str | None = None
    splits: list[str] | None = None  # None: every split of the dataset
    encoder_args: dict = field(default_factory=dict)
    seed: int = 0
    clips: int | None = None
    frames: int | None = None
    fps: float | None = None
    crop: int | None = None
    resize: int | None = None
    device: str = "auto"
    batch_size: int = 8
    workers: int = 2
    cache_dir: str | None = None
    use_cache: bool = True
    out: str = "runs/eval"
    progress: bool = True


def resolve_inputs(inputs: EvalInputs):
    """The dataset layout, the requested splits (each with train and test), the encoder and its clip protocol."""
    from ssl_video.data.datasets import EVAL_FLAGS, load_layout

    layout = load_layout(inputs.dataset, root=inputs.root, videos=inputs.videos, splits=inputs.split_dir,
                         names=EVAL_FLAGS)
    splits = inputs.splits or list(layout.splits)
    unknown = [s for s in splits if s not in layout.splits]
    if unknown:
        raise UserError(f"{inputs.dataset}: no split {unknown[0]} (available: {', '.join(layout.splits)})")
    for s in splits:
        if not {"train", "test"} <= set(layout.splits[s]):
            raise UserError(f"{inputs.dataset}: split {s} needs train and test subsets")
    encoder = resolve_encoder(inputs.encoder, inputs.encoder_args, seed=inputs.seed, modality="video",
                              key="--encoder")
    protocol = ClipProtocol.for_encoder(encoder.model.spec, clips=inputs.clips if inputs.clips else 10,
                                        frames=inputs.frames, fps=inputs.fps, crop=inputs.crop, resize=inputs.resize)
    return layout, splits, encoder, protocol


def prepare_features(inputs: EvalInputs):
    """:func:`resolve_inputs`, then the (cached) features of every listed video: ``(..., FeatureTable)``."""
    layout, splits, encoder, protocol = resolve_inputs(inputs)
    # every video of the dataset (all splits), in a fixed order: one cache entry serves every split
    paths = sorted(r.path for r in layout.listed())
    table = extract_features(encoder, paths, protocol, device=inputs.device, batch_size=inputs.batch_size,
                             num_workers=inputs.workers, cache_dir=inputs.cache_dir, use_cache=inputs.use_cache,
                             progress=inputs.progress)
    return layout, splits, encoder, protocol, table


def split_subset(layout, table, split: str, subset: str, features: np.ndarray):
    """Rows of ``features`` (indexed like ``table.paths``) for the readable videos of one split's subset,
    with their labels and video ids."""
    all_records = layout.splits[split][subset]
    keep = table.ok[table.rows([r.path for r in all_records])]
    records = [r for r, ok in zip(all_records, keep) if ok]
    rows = table.rows([r.path for r in records])
    labels = np.array([r.label for r in records], dtype=np.int64)
    return features[rows], labels, [r.video_id for r in records]


def split_summary(per_split: dict[str, dict], keys: list[str]) -> tuple[dict, dict]:
    """Mean and (population) standard deviation over splits of every metric in ``keys``."""
    mean = {k: float(np.mean([v[k] for v in per_split.values()])) for k in keys}
    std = {k: float(np.std([v[k] for v in per_split.values()])) for k in keys}
    return mean, std


def base_report(kind: str, inputs: EvalInputs, layout, splits, encoder, protocol, table, settings: dict) -> dict:
    skipped = sorted(table.skipped)
    return {
        "protocol": {"name": kind, "dataset": inputs.dataset, "splits": splits, "clip": asdict(protocol),
                     "extraction": "encoder in eval mode; uniformly spaced clips; centre crop", **settings},
        "encoder": encoder.provenance,
        "encoder_weights_sha256": encoder.weights_hash,
        "videos_listed": len(table.paths),
        "videos_evaluated": int(table.ok.sum()),
        "skipped": skipped,
        "skipped_reasons": {p: table.skipped[p] for p in skipped},
        "classes": layout.classes,
        "feature_cache_hit": table.cache_hit,
        "extraction_seconds": round(table.seconds, 2),
    }


def run_linear_probe(inputs: EvalInputs, settings: ProbeSettings | None = None) -> dict:
    """Linear probe on every requested split; writes ``OUT/report.{json,md}`` and plots."""
    settings = settings or ProbeSettings(seed=inputs.seed)
    started = time.time()
    layout, splits, encoder, protocol, table = prepare_features(inputs)
    per_split, confusion = {}, None
    for s in splits:
        train_x, train_y, train_ids = split_subset(layout, table, s, "train", table.mean)
        test_x, test_y, _ = split_subset(layout, table, s, "test", table.mean)
        if len(train_y) == 0 or len(test_y) == 0:
            raise UserError(f"split {s}: no readable {'training' if len(train_y) == 0 else 'test'} video")
        result = probe_split(train_x, train_y, train_ids, test_x, test_y, len(layout.classes), settings)
        confusion = result.pop("confusion") + (0 if confusion is None else confusion)
        per_split[s] = result
    mean, std = split_summary(per_split, ["top1", "top5"])
    report = base_report("linear-probe", inputs, layout, splits, encoder, protocol, table, {
        "classifier": "multinomial logistic regression (L-BFGS) on L2-normalised video features "
                      "(mean of clip features)",
        "l2_grid": list(settings.l2_grid), "holdout_fraction": settings.holdout_fraction,
        "selection": "L2 penalty with the best top-1 on a held-out part of each split's training set "
                     "(whole gXX groups held out for UCF101-style names), then refit on the full training set",
        "reported_epoch": "n/a (convex problem solved to convergence)", "seed": settings.seed,
    })
    report.update({"splits": per_split, "mean": mean, "std": std, "seconds": round(time.time() - started, 2)})
    write_split_report(inputs.out, report, per_split, ["top1", "top5"], "Linear probe", confusion, layout.classes)
    return report


def run_retrieval(inputs: EvalInputs, ks: tuple[int, ...] = (1, 5, 10, 20)) -> dict:
    """Retrieval: test videos query the training videos of each split; recall@k."""
    started = time.time()
    layout, splits, encoder, protocol, table = prepare_features(inputs)
    per_split = {}
    for s in splits:
        gallery, gallery_y, _ = split_subset(layout, table, s, "train", table.mean_l2)
        queries, query_y, _ = split_subset(layout, table, s, "test", table.mean_l2)
        if len(gallery_y) == 0 or len(query_y) == 0:
            raise UserError(f"split {s}: no readable {'training' if len(gallery_y) == 0 else 'test'} video")
        per_split[s] = {**retrieval_recall(queries, query_y, gallery, gallery_y, ks),
                        "queries": int(len(query_y)), "gallery": int(len(gallery_y))}
    keys = [f"recall@{k}" for k in ks]
    mean, std = split_summary(per_split, keys)
    report = base_report("retrieval", inputs, layout, splits, encoder, protocol, table, {
        "similarity": "cosine (faiss exact inner product on L2-normalised features)",
        "video_feature": "mean of L2-normalised clip features (pooled encoder output)",
        "queries": "test split", "gallery": "train split", "hit": "any of the top k shares the query's class",
        "ks": list(ks),
    })
    report.update({"splits": per_split, "mean": mean, "std": std, "seconds": round(time.time() - started, 2)})
    write_split_report(inputs.out, report, per_split, keys, "Retrieval", None, layout.classes)
    return report


def write_split_report(out: str, report: dict, per_split: dict, keys: list[str], title: str, confusion, classes) -> None:
    """``report.json``/``report.md``, per-split bars and (with a confusion matrix) the most confused pairs."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [split_bars(out_dir / "splits.png", per_split, keys, title)]
    if confusion is not None:
        plots.append(confused_pairs_chart(out_dir / "confused_pairs.png", confusion, classes))
        report["most_confused"] = _top_confusions(confusion, classes)
    table = [{"split": s, **{k: v[k] for k in keys}} for s, v in per_split.items()]
    table.append({"split": "mean", **report["mean"]})
    table.append({"split": "std", **report["std"]})
    notes = [f"Encoder: `{report['encoder'].get('source') or report['encoder'].get('architecture')}` "
             f"({report['encoder'].get('init')}); videos listed {report['videos_listed']}, evaluated "
             f"{report['videos_evaluated']}, skipped {len(report['skipped'])}."]
    notes += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    write_report(out_dir, report, table, title=title, notes=notes)


def _top_confusions(confusion: np.ndarray, classes: list[str], n: int = 10) -> list[dict]:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    pairs = []
    for flat in order:
        t, p = np.unravel_index(flat, off.shape)
        if off[t, p] == 0:
            break
        pairs.append({"true": classes[t], "predicted": classes[p], "count": int(off[t, p])})
    return pairs
