"""``ssl-video export``: a pretrained encoder out of a run directory or checkpoint."""

from __future__ import annotations

from ssl_video.cli import add_command

EXPORT_EXAMPLE = """examples:
  ssl-video export runs/stica_r2p1d18 --out encoders/stica_r2p1d18            (video encoder)
  ssl-video export runs/stica_r2p1d18 --out encoders/stica --encoder all      (encoders/stica/{video,audio})
  ssl-video export runs/tsp/checkpoints/last.pt --out encoders/tsp_tv --format torchvision
  ssl-video export runs/tsp --epoch best --out encoders/tsp_best     (checkpoints/best.pt: best validation epoch)
native: DIR/config.json + DIR/model.safetensors, loaded by ssl_video.load_encoder(DIR) or plain safetensors.
torchvision: DIR/<arch>.pth for torchvision.models.video.<arch>() (load with strict=False: only the
classifier is missing) for r2plus1d_18, r3d_18, mc3_18, s3d and r2plus1d_34 at width 1."""


def register(subparsers) -> None:
    cmd = add_command(subparsers, "export", "export a pretrained encoder (weights + config) from a run",
                      run_export, EXPORT_EXAMPLE)
    cmd.add_argument("source", help="run directory (uses checkpoints/last.pt) or a checkpoint file")
    cmd.add_argument("--out", required=True, help="output directory")
    cmd.add_argument("--encoder", choices=("video", "audio", "all"), default=None,
                     help="which encoder (default: video, or the only one the run has); "
                          "all = one subdirectory each")
    cmd.add_argument("--epoch", choices=("last", "best"), default="last",
                     help="from a run directory: the last checkpoint (default) or best.pt, the epoch with the best "
                          "trainer.best_metric on the validation split")
    cmd.add_argument("--format", choices=("native", "torchvision"), default="native",
                     help="native (safetensors + config.json, default) or torchvision (state dict .pth)")


def run_export(args) -> int:
    import json

    from ssl_video.export import export_encoder
    from ssl_video.models.io import CONFIG_FILE, MODEL_CARD

    for directory in export_encoder(args.source, args.out, encoder=args.encoder, format=args.format,
                                    epoch=args.epoch):
        config = json.loads((directory / CONFIG_FILE).read_text())
        print(f"wrote {directory}: {config['architecture']} ({config['role']}, {config['params']:,} parameters, "
              f"step {config['provenance'].get('step')}) -> {config['weights']} + {CONFIG_FILE} + {MODEL_CARD}")
        if args.format == "torchvision":
            print(f"  load: {config['torchvision']['load']}")
        else:
            print(f"  load: ssl_video.load_encoder({str(directory)!r})")
    return 0
