"""``ssl-video eval ...``: evaluation protocols.

Each protocol adds itself with one ``_add_<protocol>(group)`` function listed in ``COMMANDS``; its handler
parses the arguments, calls one library function and returns an exit code. Heavy imports stay inside
the handlers.
"""

from __future__ import annotations

import argparse

from ssl_video.cli import add_command, add_group
from ssl_video.errors import UserError

EPILOG = """examples:
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
"""

POOLING_EPILOG = """examples:
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
  ssl-video eval pooling --features feats_dir/ --labels labels.csv --head netvlad --clusters 32 --no-gating
  ssl-video eval pooling --features yt.h5 --labels yt.csv --multilabel --head netvlad,avg --epochs 10

features: one .h5 file (a [num_clips, F] dataset per video, keyed by video name) or a directory of
<video>.npy arrays, as written by `ssl-video extract`. labels: CSV rows `video,label[,label...]`, header
optional; a header with a `split` column (train/test) fixes the split, otherwise a seeded stratified
70/30 split is drawn. Writes OUT/report.json, OUT/report.md and a PNG bar chart of the main metric.
"""

HEAD_HELP = (
    "pooling head(s), comma separated: netvlad, netrvlad, netfv, netbow, attention_clusters, "
    "attention_clusters_noshift, transformer, avg, max, lstm, gru; or 'all' (default: netvlad)"
)


def register(subparsers) -> None:
    group = add_group(subparsers, "eval", "Evaluate encoders and their features.", EPILOG)
    for add in COMMANDS:
        add(group)


# ----------------------------------------------------------------------------------------------------
# eval pooling


def _add_pooling(group) -> None:
    cmd = add_command(
        group,
        "pooling",
        "Train and test pooling classifiers (NetVLAD family, Attention Clusters, transformer, avg/max, "
        "LSTM/GRU) on per-video feature sequences.",
        run_pooling,
        POOLING_EPILOG,
    )
    src = cmd.add_argument_group("inputs")
    src.add_argument("--features", metavar="PATH", help="an .h5 feature file or a directory of .npy files")
    src.add_argument(
        "--labels", metavar="CSV", help="labels CSV: video,label[,label...] (header and split optional)"
    )
    src.add_argument(
        "--encoder", metavar="E", help="extract features with this encoder first (not available yet)"
    )
    src.add_argument("--dataset", metavar="NAME", help="dataset to extract features from (with --encoder)")
    head = cmd.add_argument_group("model")
    head.add_argument("--head", default="netvlad", help=HEAD_HELP)
    head.add_argument(
        "--clusters", type=int, default=64, metavar="K", help="clusters/attention units (default 64)"
    )
    head.add_argument(
        "--gating", action=argparse.BooleanOptionalAction, default=True, help="Context Gating (default on)"
    )
    head.add_argument(
        "--classifier",
        choices=("auto", "linear", "moe"),
        default="auto",
        help="final classifier (auto: MoE for --multilabel, linear otherwise)",
    )
    head.add_argument("--hidden", type=int, default=512, help="size of the FC after pooling (default 512)")
    head.add_argument("--multilabel", action="store_true", help="multi-label: BCE, GAP@20 and mAP")
    train = cmd.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument(
        "--max-clips", type=int, default=300, help="clips used per video at most (default 300)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    cmd.add_argument("--out", default="runs/eval/pooling", metavar="DIR", help="report directory")


def _positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{name} must be positive, got {value}")


def run_pooling(args) -> int:
    if args.encoder is not None or (args.dataset is not None and args.features is None):
        raise UserError(
            "eval pooling works on extracted features: run `ssl-video extract` with your encoder first, "
            "then pass its output with --features and a --labels CSV"
        )
    if args.features is None or args.labels is None:
        raise UserError("eval pooling needs --features PATH and --labels CSV")
    for name in ("clusters", "hidden", "epochs", "lr", "batch_size", "max_clips"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))

    from ssl_video.evaluation.features_io import read_features, read_labels_csv
    from ssl_video.evaluation.pooling import ALL_HEADS, PoolingSettings, run_pooling_eval
    from ssl_video.evaluation.report import markdown_table

    heads = list(ALL_HEADS) if args.head == "all" else [h.strip() for h in args.head.split(",") if h.strip()]
    unknown = [h for h in heads if h not in ALL_HEADS]
    if unknown or not heads:
        raise UserError(
            f"unknown head '{unknown[0] if unknown else args.head}'; choose from {', '.join(ALL_HEADS)} or all"
        )
    features = read_features(args.features)
    labels = read_labels_csv(args.labels)
    settings = PoolingSettings(
        clusters=args.clusters,
        gating=args.gating,
        classifier=args.classifier,
        hidden=args.hidden,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_clips=args.max_clips,
        seed=args.seed,
        device=args.device,
    )
    result = run_pooling_eval(
        features,
        labels,
        heads,
        settings,
        multilabel=args.multilabel,
        out_dir=args.out,
        sources={"features": str(args.features), "labels": str(args.labels)},
        progress=True,
    )
    report = result["report"]
    print(
        f"{report['task']}: {report['classes']} classes, {report['train_videos']} train / "
        f"{report['test_videos']} test videos ({report['split']})"
    )
    print(markdown_table(result["table"]))
    for path in result["files"].values():
        print(f"wrote {path}")
    return 0


COMMANDS = [_add_pooling]
