"""``ssl-video extract``: clip features of every video (resumable, shardable)."""

from __future__ import annotations

from ssl_video.cli import add_command
from ssl_video.errors import UserError

EXAMPLE = """examples:
  ssl-video extract --encoder encoders/tsp --videos /data/anet/videos --frames 16 --fps 15 --stride 16 --out anet.h5
  ssl-video extract --encoder r2plus1d_34 --list val_videos.txt --videos /data/thumos --stride 1 --out feats/ --format npy
  ssl-video extract --encoder encoders/tsp --videos /data/anet/videos --out anet.h5 --shard 3/8   (one array task)
  ssl-video extract --encoder encoders/tsp --videos /data/anet/videos --out anet.h5   (after the shards: merges them)

Clips of --frames frames at --fps start every --stride frames; a video shorter than one clip gives one
padded clip. Output: one [num_clips, F] float32 array per video with its clip start times: an HDF5 file
keyed by video name (start times in the attribute start_times), or <video>.npy + <video>.times.npy.
A rerun skips the videos already done; --shard i/n (0-based) takes every n-th video from the i-th;
unreadable videos are skipped and listed in the report next to the output."""


def register(subparsers) -> None:
    cmd = add_command(subparsers, "extract", "extract clip features of long videos (h5 or npy; resumable, shardable)",
                      run_extract, EXAMPLE, slurm="array")
    add_encoder_arguments(cmd)
    src = cmd.add_argument_group("videos")
    src.add_argument("--videos", metavar="DIR", help="videos directory (every video under it, or the base of --list)")
    src.add_argument("--list", metavar="FILE", help="file with one video path per line")
    clip = cmd.add_argument_group("clips")
    add_clip_arguments(clip)
    out = cmd.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="PATH", help="an .h5 file or a directory of .npy files")
    out.add_argument("--format", choices=("h5", "npy"), default=None,
                     help="default: h5 when --out ends in .h5, npy otherwise")
    out.add_argument("--shard", metavar="i/n", default=None, help="extract shard i (0-based) of n")
    add_run_arguments(cmd)


def add_encoder_arguments(cmd) -> None:
    cmd.add_argument("--encoder", required=True, metavar="E", help="exported encoder directory or zoo name")
    cmd.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE",
                     help="constructor overrides for a zoo name (e.g. width=0.25)")


def add_clip_arguments(group) -> None:
    group.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    group.add_argument("--fps", type=float, default=15.0, help="frame rate of a clip (default 15)")
    group.add_argument("--stride", type=int, default=16, help="frames between clip starts (default 16)")
    group.add_argument("--resize", type=int, help="short side before the centre crop (default: the encoder's)")
    group.add_argument("--resize-hw", type=int, nargs=2, metavar=("H", "W"),
                       help="scale frames to exactly H x W, aspect not kept (TSP: 128 171); instead of --resize")
    group.add_argument("--crop", type=int, help="centre crop (default: the encoder's)")


def add_run_arguments(cmd) -> None:
    run = cmd.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (default 32)")
    run.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    run.add_argument("--seed", type=int, default=0, help="initialisation seed of a zoo name (default 0)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar (there is none when stderr is not a terminal)")


def encoder_and_protocol(args):
    """The encoder (resolved like every evaluation does) and the clip protocol of the arguments."""
    from ssl_video.config import parse_overrides
    from ssl_video.features.protocol import ClipProtocol
    from ssl_video.models.io import resolve_encoder

    for name in ("frames", "fps", "stride", "batch_size", "resize", "crop"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.workers < 0:
        raise UserError("--workers must be 0 or more")
    resize = args.resize
    if getattr(args, "resize_hw", None) is not None:
        if args.resize is not None or min(args.resize_hw) <= 0:
            raise UserError("--resize-hw takes two positive sizes and replaces --resize")
        resize = tuple(args.resize_hw)
    encoder = resolve_encoder(args.encoder, parse_overrides(args.encoder_args), seed=args.seed, modality="video",
                              key="--encoder")
    protocol = ClipProtocol.for_encoder(encoder.model.spec, clips=1, frames=args.frames, fps=args.fps,
                                        resize=resize, crop=args.crop)
    return encoder, protocol


def run_extract(args) -> int:
    from ssl_video.features.sliding import extract
    from ssl_video.features.videos import list_videos, parse_shard

    shard = parse_shard(args.shard)
    fmt = args.format or ("h5" if args.out.lower().endswith((".h5", ".hdf5")) else "npy")
    videos = list_videos(args.videos, args.list)
    encoder, protocol = encoder_and_protocol(args)
    summary = extract(encoder, videos, args.out, fmt=fmt, protocol=protocol, stride=args.stride, shard=shard,
                      device=args.device, batch_size=args.batch_size, workers=args.workers,
                      progress=not args.no_progress)
    print(f"shard {summary['shard']}: {summary['videos']} videos: {summary['extracted']} extracted "
          f"({summary['clips']} clips), {summary['already_done']} already done, {summary['skipped']} skipped"
          + (" (unreadable: see the report)" if summary["skipped"] else ""))
    print(f"wrote {summary['out']} and {summary['report']}")
    return 0
