"""``ssl-video data synth|check``: write the synthetic dataset; check any dataset before a long job."""

from __future__ import annotations

import json
from pathlib import Path

from ssl_video.cli import add_command, add_group
from ssl_video.errors import UserError

SYNTH_EXAMPLE = """example:
  ssl-video data synth data/synth --classes 8 --videos-per-class 30 --seconds 4 --size 32 32 --seed 0
writes data/synth/UCF-101/<Class>/v_<Class>_gXX_cYY.mp4 (h264 + AAC) and data/synth/ucfTrainTestlist/"""

UNTRIMMED_EXAMPLE = """example:
  ssl-video data synth-untrimmed data/untrimmed --videos 24 --classes 4 --seconds 12 --seed 0
writes data/untrimmed/videos/untrimmed_NNNN.mp4 and, per split (train, val), <split>_metadata.csv and
<split>_groundtruth.csv in the TSP formats (background gaps as 'No action' rows)."""

CHECK_EXAMPLE = """examples:
  ssl-video data check --dataset ucf101 --root /data/ucf101            (UCF-101/ + ucfTrainTestlist/)
  ssl-video data check --dataset hmdb51 --videos /data/hmdb51_org --split-dir /data/testTrainMulti_7030_splits
  ssl-video data check --dataset folder --root /data/my_videos --json
exit code 0 when the dataset is usable (bad files are reported); 2 when the root or split files are missing,
or when no listed video can be read (the report is printed first, then one line on stderr)."""


def register(subparsers) -> None:
    data = add_group(subparsers, "data", "create and inspect datasets")
    synth = add_command(data, "synth", "write the synthetic audio-visual dataset (UCF101 layout, mp4)",
                        run_synth, SYNTH_EXAMPLE)
    synth.add_argument("out", help="output directory")
    synth.add_argument("--classes", type=int, default=8, help="number of classes (default 8)")
    synth.add_argument("--videos-per-class", type=int, default=30, help="videos per class (default 30)")
    synth.add_argument("--seconds", type=float, default=4.0, help="video length in seconds (default 4)")
    synth.add_argument("--fps", type=float, default=16.0, help="frame rate (default 16)")
    synth.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"),
                       help="frame size, even numbers (default 32 32)")
    synth.add_argument("--no-audio-fraction", type=float, default=0.0,
                       help="fraction of videos written without an audio stream (default 0)")
    synth.add_argument("--sample-rate", type=int, default=16000, help="audio sample rate (default 16000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--workers", type=int, default=1, help="parallel writer processes (default 1)")
    synth.add_argument("--amplitude", type=float, nargs=2, default=(3.0, 5.0), metavar=("LOW", "HIGH"),
                       help="range of the motion amplitude in pixels at 32 px (default 3 5)")
    synth.add_argument("--overwrite", action="store_true",
                       help="write into OUT even when it already holds files (default: refuse)")

    untrimmed = add_command(data, "synth-untrimmed", "write untrimmed synthetic videos with labelled action "
                            "segments and background, plus TSP metadata and ground-truth CSVs",
                            run_synth_untrimmed, UNTRIMMED_EXAMPLE)
    untrimmed.add_argument("out", help="output directory")
    untrimmed.add_argument("--videos", type=int, default=24, help="number of videos (default 24)")
    untrimmed.add_argument("--classes", type=int, default=4, help="action classes (default 4)")
    untrimmed.add_argument("--seconds", type=float, default=12.0, help="video length in seconds (default 12)")
    untrimmed.add_argument("--fps", type=float, default=16.0, help="frame rate (default 16)")
    untrimmed.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"),
                           help="frame size, even numbers (default 32 32)")
    untrimmed.add_argument("--segment-seconds", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN", "MAX"),
                           help="action segment length range (default 2 4)")
    untrimmed.add_argument("--gap-seconds", type=float, nargs=2, default=(1.5, 3.5), metavar=("MIN", "MAX"),
                           help="background gap length range (default 1.5 3.5)")
    untrimmed.add_argument("--val-fraction", type=float, default=0.25, help="videos in the val split (default 0.25)")
    untrimmed.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    untrimmed.add_argument("--workers", type=int, default=1, help="parallel writer processes (default 1)")
    untrimmed.add_argument("--overwrite", action="store_true",
                           help="write into OUT even when it already holds files (default: refuse)")

    check = add_command(data, "check", "open every video once and report what is usable", run_check,
                        CHECK_EXAMPLE)
    check.add_argument("--dataset", required=True, choices=("ucf101", "hmdb51", "kinetics", "folder", "synthetic"))
    check.add_argument("--root", help="directory holding the official layout")
    check.add_argument("--videos", help="videos directory (instead of --root)")
    check.add_argument("--split-dir", dest="splits", metavar="DIR",
                       help="split/annotation directory (instead of --root), as in `ssl-video eval`")
    check.add_argument("--workers", type=int, default=None, help="parallel readers (default 2 x cores, max 8)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _check_out(args) -> None:
    """Refuse an output directory that already holds files (unless --overwrite), and bad counts."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give a directory for the dataset")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} already holds files: give another directory, or --overwrite to write into it")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.seconds <= 0 or args.fps <= 0:
        raise UserError("--seconds and --fps must be > 0")


def run_synth(args) -> int:
    _check_out(args)
    if args.classes < 1:
        raise UserError(f"--classes must be at least 1, got {args.classes}")
    if args.videos_per_class < 2:
        raise UserError(f"--videos-per-class must be at least 2 (train and test groups), got {args.videos_per_class}")
    if args.size[0] % 2 or args.size[1] % 2 or min(args.size) < 8:
        raise UserError("--size H W must be even numbers >= 8 (h264 needs even sizes)")
    if not 0.0 <= args.no_audio_fraction <= 1.0:
        raise UserError("--no-audio-fraction must lie in [0, 1]")
    from ssl_video.data.synth import generate_synthetic_dataset

    summary = generate_synthetic_dataset(
        args.out, classes=args.classes, videos_per_class=args.videos_per_class, seconds=args.seconds,
        fps=args.fps, size=tuple(args.size), no_audio_fraction=args.no_audio_fraction, seed=args.seed,
        sample_rate=args.sample_rate, workers=args.workers, amplitude_px=tuple(args.amplitude),
        progress=True,
    )
    print(f"wrote {summary['videos']} videos of {summary['classes']} classes to {args.out} "
          f"({summary['videos_without_audio']} without audio)")
    return 0


def run_synth_untrimmed(args) -> int:
    _check_out(args)
    if args.videos < 1 or args.classes < 1:
        raise UserError("--videos and --classes must be >= 1")
    from ssl_video.data.synth_untrimmed import generate_untrimmed_dataset

    summary = generate_untrimmed_dataset(
        args.out, videos=args.videos, classes=args.classes, seconds=args.seconds, fps=args.fps,
        size=tuple(args.size), segment_seconds=tuple(args.segment_seconds), gap_seconds=tuple(args.gap_seconds),
        val_fraction=args.val_fraction, seed=args.seed, workers=args.workers, progress=True,
    )
    for split, counts in summary["splits"].items():
        print(f"{split}: {counts['videos']} videos, {counts['action_segments']} action and "
              f"{counts['background_segments']} background segments")
    print(f"wrote {args.out}/videos/ and {args.out}/{{train,val}}_{{metadata,groundtruth}}.csv")
    return 0


def run_check(args) -> int:
    if args.root is None and args.videos is None:
        raise UserError("give --root DIR, or --videos DIR (and --split-dir DIR for labelled datasets)")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    from ssl_video.data.check import check_dataset, format_check

    report = check_dataset(args.dataset, root=args.root, videos=args.videos, splits=args.splits,
                           workers=args.workers, progress=not args.json)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_check(report))
    if not report["usable"]:
        raise UserError(f"{args.dataset}: not usable: none of its {report['videos_listed']} listed videos could be "
                        "read (see the report above)")
    return 0
