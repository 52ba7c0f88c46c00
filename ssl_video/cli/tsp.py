"""``ssl-video tsp ...``: helpers of temporally-sensitive pretraining (global video features)."""

from __future__ import annotations

from ssl_video.cli import add_command, add_group

GVF_EXAMPLE = """example:
  ssl-video tsp gvf --encoder encoders/r2plus1d_34_kinetics --videos /data/anet/videos \\
      --metadata /data/anet/train_metadata.csv --out anet_train_gvf.h5

The global video feature (GVF) of a video is the max over time of the clip features of the initial encoder
(clips every --stride frames); one vector per video, keyed by the file name without its extension, in one
HDF5 file that a TSP recipe names in tsp.gvf (read once into memory when training starts)."""


def register(subparsers) -> None:
    from ssl_video.cli.extract import add_clip_arguments, add_encoder_arguments, add_run_arguments

    group = add_group(subparsers, "tsp", "temporally-sensitive pretraining helpers")
    cmd = add_command(group, "gvf", "compute global video features (max over time of clip features)", run_gvf,
                      GVF_EXAMPLE)
    add_encoder_arguments(cmd)
    cmd.add_argument("--videos", required=True, metavar="DIR", help="videos directory")
    cmd.add_argument("--metadata", required=True, metavar="CSV", help="TSP metadata CSV (filename,...)")
    cmd.add_argument("--out", required=True, metavar="H5", help="output HDF5 file")
    add_clip_arguments(cmd.add_argument_group("clips"))
    add_run_arguments(cmd)


def run_gvf(args) -> int:
    import os

    from ssl_video.cli.extract import encoder_and_protocol
    from ssl_video.data.datasets.base import require_dir
    from ssl_video.data.datasets.tsp import read_metadata_csv, video_key
    from ssl_video.features.gvf import compute_gvf
    from ssl_video.features.videos import VideoItem

    root = require_dir(args.videos, "videos directory")
    videos = sorted({video_key(m.filename): VideoItem(video_key(m.filename), os.path.join(root, m.filename))
                     for m in read_metadata_csv(args.metadata)}.values(), key=lambda v: v.key)
    encoder, protocol = encoder_and_protocol(args)
    summary = compute_gvf(encoder, videos, args.out, protocol=protocol, stride=args.stride, device=args.device,
                          batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress)
    print(f"wrote {summary['written']} global video features ({summary['dim']}-d) to {summary['out']}"
          + (f"; {summary['skipped']} unreadable video(s) skipped: {', '.join(sorted(summary['skipped_videos']))}"
             if summary["skipped"] else ""))
    return 0
