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
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval retrieval --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
"""

POOLING_EPILOG = """examples:
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval retrieval --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51
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


# ----------------------------------------------------------------------------------------------------
# feature-based protocols on UCF101 / HMDB51 (linear probe, retrieval)

PROBE_EPILOG = """examples:
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval linear-probe --encoder r2plus1d_18 --encoder-args width=0.25 --dataset synthetic --root data/synth
  ssl-video eval linear-probe --encoder encoders/x --dataset hmdb51 --videos /d/hmdb51_org --split-dir /d/splits

--encoder is an exported encoder directory (config.json + model.safetensors) or a zoo name (random
initialisation: the baseline every report needs). Features are extracted once per video (--clips uniformly
spaced clips, centre crop, encoder in eval mode), cached on disk, and reused by every split and later run.
Writes OUT/report.json, OUT/report.md, OUT/splits.png and OUT/confused_pairs.png."""

RETRIEVAL_EPILOG = """examples:
  ssl-video eval retrieval --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1
  ssl-video eval retrieval --encoder r3d_18 --dataset synthetic --root data/synth --ks 1,5,10,20

Test videos are the queries, training videos the gallery; cosine similarity with faiss; a hit at k is a
same-class video among the k nearest. Uses the same feature cache as the linear probe."""


def _add_feature_protocol(group, name: str, help: str, func, epilog: str):
    cmd = add_command(group, name, help, func, epilog)
    cmd.add_argument("--encoder", required=True, metavar="E", help="exported encoder directory or zoo name")
    cmd.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE",
                     help="constructor overrides for a zoo name (e.g. width=0.25)")
    cmd.add_argument("--dataset", required=True, choices=("ucf101", "hmdb51", "synthetic", "kinetics"))
    cmd.add_argument("--root", help="directory holding the official layout")
    cmd.add_argument("--videos", help="videos directory (instead of --root)")
    cmd.add_argument("--split-dir", help="split-file directory (instead of --root)")
    cmd.add_argument("--splits", default=None, help="comma-separated split numbers (default: all)")
    clip = cmd.add_argument_group("clip protocol (defaults: the encoder's input contract)")
    clip.add_argument("--clips", type=int, default=10, help="uniformly spaced clips per video (default 10)")
    clip.add_argument("--frames", type=int, help="frames per clip")
    clip.add_argument("--fps", type=float, help="frame rate of a clip")
    clip.add_argument("--resize", type=int, help="short side before the centre crop")
    clip.add_argument("--crop", type=int, help="centre crop size")
    run = cmd.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=8, help="videos per batch (default 8)")
    run.add_argument("--workers", type=int, default=2, help="data loader workers (default 2)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    run.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default ~/.cache/ssl_video)")
    run.add_argument("--no-cache", action="store_true", help="extract again and do not store features")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=None, metavar="DIR", help=f"report directory (default runs/eval/{name})")
    return cmd


def _eval_inputs(args, name: str):
    from ssl_video.config import parse_overrides
    from ssl_video.evaluation.runner import EvalInputs

    for flag in ("clips", "frames", "fps", "resize", "crop", "batch_size"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    return EvalInputs(
        encoder=args.encoder, dataset=args.dataset, root=args.root, videos=args.videos, split_dir=args.split_dir,
        splits=splits, encoder_args=parse_overrides(args.encoder_args), seed=args.seed, clips=args.clips,
        frames=args.frames, fps=args.fps, crop=args.crop, resize=args.resize, device=args.device,
        batch_size=args.batch_size, workers=args.workers, cache_dir=args.cache, use_cache=not args.no_cache,
        out=args.out or f"runs/eval/{name}",
    )


def _print_summary(report: dict, keys: list[str], out: str) -> None:
    print(f"{report['protocol']['name']} on {report['protocol']['dataset']}: {report['videos_evaluated']} of "
          f"{report['videos_listed']} videos evaluated"
          + (f" ({len(report['skipped'])} skipped: see report.json)" if report["skipped"] else ""))
    for split, values in report["splits"].items():
        print(f"  split {split}: " + "  ".join(f"{k} {values[k]:.4f}" for k in keys))
    print("  mean:    " + "  ".join(f"{k} {report['mean'][k]:.4f} ± {report['std'][k]:.4f}" for k in keys))
    print(f"wrote {out}/report.json, report.md and plots")


def _add_linear_probe(group) -> None:
    _add_feature_protocol(group, "linear-probe", "Linear probe on frozen features, per split (UCF101/HMDB51).",
                          run_linear_probe, PROBE_EPILOG)


def run_linear_probe(args) -> int:
    from ssl_video.evaluation.runner import run_linear_probe as run

    inputs = _eval_inputs(args, "linear-probe")
    report = run(inputs)
    _print_summary(report, ["top1", "top5"], inputs.out)
    return 0


def _add_retrieval(group) -> None:
    cmd = _add_feature_protocol(group, "retrieval", "Video retrieval: test queries, train gallery, recall@k.",
                                run_retrieval, RETRIEVAL_EPILOG)
    cmd.add_argument("--ks", default="1,5,10,20", help="comma-separated k values (default 1,5,10,20)")


def run_retrieval(args) -> int:
    from ssl_video.evaluation.runner import run_retrieval as run

    inputs = _eval_inputs(args, "retrieval")
    try:
        ks = tuple(int(k) for k in args.ks.split(","))
    except ValueError:
        raise UserError(f"--ks must be comma-separated integers, got {args.ks!r}") from None
    _positive("--ks", min(ks))
    report = run(inputs, ks)
    _print_summary(report, [f"recall@{k}" for k in ks], inputs.out)
    return 0


SUITE_EPILOG = """examples:
  ssl-video eval suite eval/linear_probe.yaml --encoder encoders/x --root ucf101=/data/ucf101 --root hmdb51=/data/hmdb51
  ssl-video eval suite eval/smoke_synthetic.yaml --encoder encoders/x --root synthetic=demo_out/data
  ssl-video eval suite eval/retrieval.yaml --encoder r2plus1d_18 --data-root /data   (/data/ucf101, /data/hmdb51)

Runs every protocol of the suite on one encoder; each writes its own report under OUT/<protocol>/, and
OUT/report.json + OUT/report.md combine them. Suites shipped in eval/: linear_probe.yaml, retrieval.yaml,
smoke_synthetic.yaml."""


def _add_suite(group) -> None:
    cmd = add_command(group, "suite", "Run a suite of protocols (eval/<suite>.yaml) on one encoder.", run_suite,
                      SUITE_EPILOG)
    cmd.add_argument("suite", help="suite YAML file")
    cmd.add_argument("--encoder", required=True, metavar="E", help="exported encoder directory or zoo name")
    cmd.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--root", action="append", default=[], metavar="DATASET=DIR",
                     help="where a dataset lives (repeatable)")
    cmd.add_argument("--data-root", metavar="DIR", help="a folder holding one folder per dataset name")
    cmd.add_argument("--batch-size", type=int, default=8)
    cmd.add_argument("--workers", type=int, default=2)
    cmd.add_argument("--device", default="auto")
    cmd.add_argument("--cache", default=None, metavar="DIR")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--out", default=None, metavar="DIR", help="report directory (default runs/eval/<suite>)")


def run_suite(args) -> int:
    from ssl_video.config import parse_overrides
    from ssl_video.evaluation.report import markdown_table
    from ssl_video.evaluation.runner import EvalInputs
    from ssl_video.evaluation.suite import load_suite
    from ssl_video.evaluation.suite import run_suite as run

    suite = load_suite(args.suite)
    roots = {}
    for item in args.root:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--root expects DATASET=DIR, got {item!r}")
        roots[name] = path
    base = EvalInputs(encoder=args.encoder, dataset="", encoder_args=parse_overrides(args.encoder_args),
                      seed=args.seed, device=args.device, batch_size=args.batch_size, workers=args.workers,
                      cache_dir=args.cache, out=args.out or f"runs/eval/{suite.name}")
    result = run(suite, base, roots, args.data_root)
    rows = [{"protocol": name, **{k: v for k, v in r["mean"].items()}} for name, r in result["results"].items()]
    print(markdown_table(rows))
    print(f"wrote {base.out}/report.json and report.md")
    return 0


COMMANDS = [_add_linear_probe, _add_retrieval, _add_pooling, _add_suite]
