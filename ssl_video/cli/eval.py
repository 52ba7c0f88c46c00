"""``ssl-video eval ...``: evaluation protocols.

Each protocol adds itself with one ``_add_<protocol>(group)`` function listed in ``COMMANDS``; its handler
parses the arguments, calls one library function and returns an exit code. Heavy imports stay inside
the handlers.
"""

from __future__ import annotations

import argparse
import sys

from ssl_video.cli import add_command, add_group
from ssl_video.errors import UserError

EPILOG = """examples:
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval retrieval --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51
  ssl-video eval finetune --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
"""

POOLING_EPILOG = """examples:
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval retrieval --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
  ssl-video eval pooling --features feats_dir/ --labels labels.csv --head netvlad --clusters 32 --no-gating
  ssl-video eval pooling --features yt.h5 --labels yt.csv --multilabel --head netvlad,avg --epochs 10
  ssl-video eval pooling --features rgb.h5 --audio-features audio.h5 --labels labels.csv --head netvlad
  ssl-video eval pooling --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3 --head all

features: one .h5 file (a [num_clips, F] dataset per video, keyed by video name) or a directory of
<video>.npy arrays, as written by `ssl-video extract`. labels: CSV rows `video,label[,label...]`, header
optional; a header with a `split` column (train/test) fixes the split, otherwise a seeded stratified
70/30 split is drawn. --audio-features (same layout and video names) adds an audio stream: one pooling
head per stream, late fusion. --encoder instead extracts --clips uniformly spaced clip features per video of
--dataset (the feature cache shared with linear-probe and retrieval) and trains/tests on its official splits.
Writes OUT/report.json, OUT/report.md and a PNG bar chart of the main metric.
"""

HEAD_HELP = (
    "pooling head(s), comma separated: netvlad, netrvlad, netfv, netbow, attention_clusters, "
    "attention_clusters_noshift, transformer, avg, max, lstm, gru; or 'all' (default: netvlad)"
)


def register(subparsers) -> None:
    group = add_group(subparsers, "eval", "Evaluate encoders and their features.", EPILOG, slurm=True)
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
    src.add_argument("--audio-features", metavar="PATH", help="second stream (audio) for two-stream heads")
    src.add_argument(
        "--encoder", metavar="E", help="extract clip features of --dataset with this encoder (directory or zoo name)"
    )
    src.add_argument("--dataset", choices=("ucf101", "hmdb51", "synthetic", "kinetics"), help="with --encoder")
    ext = cmd.add_argument_group("extraction (with --encoder; clip defaults: the encoder's input contract)")
    ext.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE", help="zoo constructor overrides")
    ext.add_argument("--root", help="directory holding the dataset's official layout")
    ext.add_argument("--videos", help="videos directory (instead of --root)")
    ext.add_argument("--split-dir", help="split-file directory (instead of --root)")
    ext.add_argument("--splits", default=None, help="comma-separated split numbers (default: all)")
    ext.add_argument("--clips", type=int, default=10, help="uniformly spaced clips per video (default 10)")
    ext.add_argument("--frames", type=int, help="frames per clip")
    ext.add_argument("--fps", type=float, help="frame rate of a clip")
    ext.add_argument("--resize", type=int, help="short side before the centre crop")
    ext.add_argument("--crop", type=int, help="centre crop size")
    ext.add_argument("--workers", type=int, default=2, help="data loader workers (default 2)")
    ext.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default ~/.cache/ssl_video)")
    ext.add_argument("--no-cache", action="store_true", help="extract again and do not store features")
    head = cmd.add_argument_group("model")
    head.add_argument("--head", default="netvlad", help=HEAD_HELP)
    head.add_argument(
        "--clusters", type=int, default=64, metavar="K", help="clusters/attention units (default 64)"
    )
    head.add_argument(
        "--audio-clusters", type=int, metavar="K", help="two streams: audio clusters (default clusters/2)"
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
    if args.encoder is not None:
        if args.features is not None or args.labels is not None or args.audio_features is not None:
            raise UserError("give either --encoder with --dataset, or --features with --labels, not both")
        if args.dataset is None:
            raise UserError("--encoder needs --dataset (and --root) to extract clip features from")
        if args.multilabel:
            raise UserError("--multilabel applies to --features with a labels CSV (the datasets are multi-class)")
    elif args.features is None or args.labels is None:
        raise UserError("eval pooling needs --features PATH and --labels CSV, or --encoder E --dataset NAME")
    for name in ("clusters", "audio_clusters", "hidden", "epochs", "lr", "batch_size", "max_clips"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))

    from ssl_video.evaluation.pooling import (
        ALL_HEADS,
        PoolingSettings,
        run_pooling_eval,
        run_pooling_on_dataset,
    )
    from ssl_video.evaluation.report import markdown_table
    from ssl_video.features.files import read_features
    from ssl_video.features.labels import read_labels_csv

    heads = list(ALL_HEADS) if args.head == "all" else [h.strip() for h in args.head.split(",") if h.strip()]
    unknown = [h for h in heads if h not in ALL_HEADS]
    if unknown or not heads:
        raise UserError(
            f"unknown head '{unknown[0] if unknown else args.head}'; choose from {', '.join(ALL_HEADS)} or all"
        )
    settings = PoolingSettings(
        clusters=args.clusters,
        audio_clusters=args.audio_clusters,
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
    if args.encoder is not None:
        from dataclasses import replace

        inputs = replace(_eval_inputs(args, "pooling"), batch_size=8)  # --batch-size is the heads' batch
        result = run_pooling_on_dataset(inputs, heads, settings, progress=True)
        report = result["report"]
        print(
            f"pooling on {args.dataset}: {report['videos_evaluated']} of {report['videos_listed']} videos, "
            f"splits {', '.join(report['splits'])} (mean over splits)"
        )
    else:
        audio = read_features(args.audio_features) if args.audio_features is not None else None
        sources = {"features": str(args.features), "labels": str(args.labels)}
        if audio is not None:
            sources["audio_features"] = str(args.audio_features)
        result = run_pooling_eval(
            read_features(args.features),
            read_labels_csv(args.labels),
            heads,
            settings,
            multilabel=args.multilabel,
            out_dir=args.out,
            sources=sources,
            progress=True,
            audio=audio,
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


def _add_feature_protocol(group, name: str, help: str, func, epilog: str, cache: bool = True):
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
    if cache:
        run.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default ~/.cache/ssl_video)")
        run.add_argument("--no-cache", action="store_true", help="extract again and do not store features")
    else:
        cmd.set_defaults(cache=None, no_cache=True)
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
finetune.yaml, smoke_synthetic.yaml. A fine-tuning entry stopped by a signal exits with code 3: rerun to resume."""


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
    if result["status"] != "completed":
        from ssl_video.engine.trainer import EXIT_STOPPED

        print(f"{result['entry']}: split {result['split']} {result['status']} at step {result['step']}: "
              "run the same command again to resume")
        return EXIT_STOPPED if result["status"] == "stopped" else 0
    rows = [{"protocol": name, **{k: v for k, v in r["mean"].items()}} for name, r in result["results"].items()]
    print(markdown_table(rows))
    print(f"wrote {base.out}/report.json and report.md")
    return 0


FINETUNE_EPILOG = """examples:
  ssl-video eval finetune --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval finetune --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51 --frames 32 --fps 30 \\
      --resize 128 --crop 128 --out runs/eval/ft_hmdb_random
  ssl-video eval finetune --encoder r3d_18 --encoder-args width=0.25 --dataset synthetic --root data/synth \\
      --epochs 2 --train-clips 1 --override trainer.tensorboard=false optim.nesterov=true

Per split, the encoder plus a linear classifier is trained end to end on the training list (the `finetune`
method through the shared training loop, run directory OUT/split_<s>/), then every test video is scored by
averaging the softmax over --clips uniformly spaced clips x --crops spatial crops. Rerunning the same
command resumes an interrupted split and reuses finished ones. Defaults follow the STiCA/GDT protocol
(docs/PROTOCOLS.md). Writes OUT/report.json, OUT/report.md, OUT/splits.png and OUT/confused_pairs.png.
exit codes: 0 done; 2 bad arguments; 3 stopped by SIGTERM/SIGUSR2 (checkpoint written: rerun to resume);
  4 the loss became NaN/inf."""


def _add_finetune(group) -> None:
    cmd = _add_feature_protocol(group, "finetune", "Fine-tune end to end per split and test with clip x crop "
                                "averaging (UCF101/HMDB51).", run_finetune, FINETUNE_EPILOG, cache=False)
    ft = cmd.add_argument_group("fine-tuning (defaults: the STiCA/GDT protocol)")
    ft.add_argument("--epochs", type=float, help="epochs (default 12)")
    ft.add_argument("--lr", type=float, help="classifier learning rate (default 0.0025)")
    ft.add_argument("--backbone-lr-scale", type=float, help="backbone lr = lr x this (default 0.1)")
    ft.add_argument("--optimizer", choices=("sgd", "adamw", "adam"), help="default sgd (momentum 0.9)")
    ft.add_argument("--weight-decay", type=float, help="default 0.005")
    ft.add_argument("--warmup", type=float, help="linear warm-up epochs (default 2)")
    ft.add_argument("--schedule", choices=("step", "cosine", "constant"), help="after the warm-up (default step)")
    ft.add_argument("--milestones", help="step schedule: comma-separated epochs (default 6,10)")
    ft.add_argument("--gamma", type=float, help="step schedule: lr factor at each milestone (default 0.05)")
    ft.add_argument("--dropout", type=float, help="before the classifier (default 0.5)")
    ft.add_argument("--label-smoothing", type=float, help="default 0")
    ft.add_argument("--train-batch-size", type=int, help="training clips per step (default 32)")
    ft.add_argument("--train-clips", type=int, help="random clips per video per epoch (default 10)")
    ft.add_argument("--color-jitter", type=float, help="colour jitter probability in training (default 0.8)")
    ft.add_argument("--crops", type=int, help="spatial crops per test clip: 1 centre, 3 along the long side "
                                              "(default 3)")
    ft.add_argument("--average", choices=("softmax", "logits"), help="averaged over test views (default softmax)")
    ft.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), help="CUDA only (default bf16)")
    ft.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="dotted overrides of the per-split training recipe (e.g. data.clip.video.scale=[0.3,1])")


FINETUNE_FLAGS = ("epochs", "lr", "backbone_lr_scale", "optimizer", "weight_decay", "warmup", "schedule", "gamma",
                  "dropout", "label_smoothing", "train_clips", "color_jitter", "crops", "average", "mixed_precision")


def run_finetune(args) -> int:
    from ssl_video.engine.trainer import EXIT_NONFINITE, EXIT_STOPPED, NonFiniteLoss
    from ssl_video.evaluation.finetune import FinetuneSettings
    from ssl_video.evaluation.finetune import run_finetune as run

    inputs = _eval_inputs(args, "finetune")
    given = {name: getattr(args, name) for name in FINETUNE_FLAGS if getattr(args, name) is not None}
    if args.train_batch_size is not None:
        given["batch_size"] = args.train_batch_size
    if args.milestones is not None:
        try:
            given["milestones"] = [float(m) for m in args.milestones.split(",") if m.strip()]
        except ValueError:
            raise UserError(f"--milestones must be comma-separated numbers, got {args.milestones!r}") from None
    settings = FinetuneSettings(**given, overrides=list(args.override))
    try:
        report = run(inputs, settings)
    except NonFiniteLoss as exc:
        print(f"ssl-video: error: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    if report["status"] != "completed":
        print(f"split {report['split']} {report['status']} at step {report['step']}/{report['total_steps']} "
              f"({report['run_dir']}): run the same command again to resume")
        return EXIT_STOPPED if report["status"] == "stopped" else 0
    _print_summary(report, ["top1", "top5"], inputs.out)
    return 0


TEMPORAL_EPILOG = """examples:
  ssl-video eval temporal --encoder encoders/tsp --gt anet/val_groundtruth.csv --videos /data/anet/videos
  ssl-video eval temporal --encoder encoders/tac --gt data/untrimmed/train_groundtruth.csv \\
      --test-gt data/untrimmed/val_groundtruth.csv --videos data/untrimmed/videos --out runs/eval/temporal_tac

Clips evenly spaced in every segment of the TSP ground-truth CSV (--clips-per-segment, centre crop, encoder
in eval mode); a logistic regression tells action (foreground) from background clips. Without --test-gt a
seeded --test-fraction of the videos is held out. Writes OUT/report.json, OUT/report.md and a bar chart."""


def _add_temporal(group) -> None:
    cmd = add_command(group, "temporal", "Temporal sensitivity: foreground/background linear probe on clip "
                      "features of untrimmed videos (TSP ground truth).", run_temporal, TEMPORAL_EPILOG)
    cmd.add_argument("--encoder", required=True, metavar="E", help="exported encoder directory or zoo name")
    cmd.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE",
                     help="constructor overrides for a zoo name (e.g. width=0.25)")
    cmd.add_argument("--gt", required=True, metavar="CSV", help="TSP ground-truth CSV (training clips of the probe)")
    cmd.add_argument("--test-gt", metavar="CSV", help="TSP ground-truth CSV of the test clips")
    cmd.add_argument("--test-fraction", type=float, default=0.3, help="videos held out without --test-gt (0.3)")
    cmd.add_argument("--videos", required=True, metavar="DIR", help="directory holding the CSVs' filenames")
    cmd.add_argument("--clips-per-segment", type=int, default=5, help="evenly spaced clips per segment (5)")
    cmd.add_argument("--frames", type=int, help="frames per clip (default: the encoder's)")
    cmd.add_argument("--fps", type=float, help="frame rate of a clip (default: the encoder's)")
    cmd.add_argument("--resize", type=int, help="short side before the centre crop")
    cmd.add_argument("--crop", type=int, help="centre crop size")
    cmd.add_argument("--batch-size", type=int, default=16)
    cmd.add_argument("--workers", type=int, default=2)
    cmd.add_argument("--device", default="auto")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--out", default="runs/eval/temporal", metavar="DIR", help="report directory")


def run_temporal(args) -> int:
    from ssl_video.config import parse_overrides
    from ssl_video.evaluation.temporal import TemporalInputs
    from ssl_video.evaluation.temporal import run_temporal as run

    for flag in ("clips_per_segment", "frames", "fps", "resize", "crop", "batch_size"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    report = run(TemporalInputs(
        encoder=args.encoder, gt=args.gt, videos=args.videos, test_gt=args.test_gt, test_fraction=args.test_fraction,
        clips_per_segment=args.clips_per_segment, encoder_args=parse_overrides(args.encoder_args), frames=args.frames,
        fps=args.fps, resize=args.resize, crop=args.crop, device=args.device, batch_size=args.batch_size,
        workers=args.workers, seed=args.seed, out=args.out))
    print(f"temporal: fg/bg probe top-1 {report['fg_bg_top1']:.4f} (balanced {report['balanced_accuracy']:.4f}) on "
          f"{report['test_clips']} test clips ({report['train_clips']} training clips)"
          + (f"; {len(report['skipped'])} unreadable video(s) skipped" if report["skipped"] else ""))
    print(f"wrote {args.out}/report.json and report.md")
    return 0


COMMANDS = [_add_linear_probe, _add_retrieval, _add_finetune, _add_pooling, _add_suite, _add_temporal]
