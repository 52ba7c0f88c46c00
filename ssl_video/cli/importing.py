"""``ssl-video import``: a checkpoint released by other code -> an encoder directory like ``ssl-video export``."""

from __future__ import annotations

from ssl_video.cli import add_command

IMPORT_EXAMPLE = """examples:
  ssl-video import torchvision r2plus1d_18-91a641e6.pth --arch r2plus1d_18 --out encoders/r2plus1d_18_k400
  ssl-video import gdt gdt_K400.pth --out encoders/gdt_k400                     (video encoder)
  ssl-video import gdt gdt_K400.pth --modality audio --out encoders/gdt_k400_audio
  ssl-video import tsp r2plus1d_34-tac_on_kinetics-0547130e.pth --out encoders/tac_kinetics
  ssl-video import tsp r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth --out encoders/r2plus1d_34_kinetics
                                                                              (where TSP training starts)
  ssl-video import mmaction2 costb_r50_k400.pth --out encoders/costb_r50
  ssl-video import imagenet2d resnet50-0676ba61.pth --variant b --out encoders/cost_r50_imagenet
  ssl-video import timm resnet50_a1_0-14fe96d1.pth --arch resnet50 --out encoders/timm_resnet50
The file is read with weights_only (tensors and plain containers); nothing is downloaded. The directory
holds config.json (architecture, input contract, provenance with the file's sha256) + model.safetensors:
give it to any --encoder, or ssl_video.load_encoder(DIR). Formats and their checks: docs/WEIGHTS.md."""


def register(subparsers) -> None:
    from ssl_video.models.imports import FORMATS

    cmd = add_command(subparsers, "import", "import a published checkpoint as an encoder directory",
                      run_import, IMPORT_EXAMPLE)
    cmd.add_argument("format", choices=tuple(FORMATS), metavar="FORMAT",
                     help="; ".join(f"{name}: {text}" for name, (_, text) in FORMATS.items()))
    cmd.add_argument("source", help="the checkpoint file you downloaded")
    cmd.add_argument("--out", required=True, help="output encoder directory")
    cmd.add_argument("--arch", help="architecture (zoo name; timm model name for 'timm'); inferred where the "
                                    "file tells (tsp: file name, gdt: r2plus1d_18 / audio_resnet9, CoST: depth)")
    cmd.add_argument("--modality", choices=("video", "audio"), default="video",
                     help="which encoder (gdt: audio_network; timm: 1-channel spectrogram input)")
    cmd.add_argument("--variant", choices=("a", "b"), help="CoST variant (imagenet2d; default b)")
    cmd.add_argument("--keep-heads", action="store_true",
                     help="tsp: keep the heads fc1/fc2 in OUT/heads.safetensors (default: dropped)")
    cmd.add_argument("--seed", type=int, default=0, help="seed for parameters the file does not hold (default 0)")


def run_import(args) -> int:
    import json

    from ssl_video.models.imports import ImportOptions, import_checkpoint
    from ssl_video.models.io import CONFIG_FILE

    options = ImportOptions(arch=args.arch, modality=args.modality, keep_heads=args.keep_heads,
                            variant=args.variant, seed=args.seed)
    out = import_checkpoint(args.format, args.source, args.out, options)
    config = json.loads((out / CONFIG_FILE).read_text())
    print(f"wrote {out}: {config['architecture']} {config['args']} ({config['params']:,} parameters, "
          f"sha256 {config['provenance']['sha256'][:12]}) -> {config['weights']} + {CONFIG_FILE}")
    print(f"  use: --encoder {out}   or   ssl_video.load_encoder({str(out)!r})")
    return 0
