"""``ssl-video zoo list|show|explain``: the encoders, their input contracts and costs."""

from __future__ import annotations

import json

from ssl_video.cli import add_command, add_group
from ssl_video.errors import UserError

TIMM_HELP = """Any 2-D timm model works too, by name: timm:<model> (e.g. timm:resnet18, timm:convnext_tiny).
  video: the model runs on every frame (TSN-style); the feature map keeps the time axis (B x C x T x H' x W').
  audio: create_encoder("timm:resnet18", modality="audio") takes the log-mel as a 1-channel image.
  timm weights are never downloaded (pretrained=False); other options go to timm.create_model.
  ssl-video zoo show timm:resnet18        shows its input contract and cost."""

LIST_EXAMPLE = """examples:
  ssl-video zoo list
  ssl-video zoo list --json
GFLOPs are multiply-adds of one clip at the encoder's default input (the convention of torchvision and
the papers), counted on the meta device (no compute)."""

SHOW_EXAMPLE = """examples:
  ssl-video zoo show r2plus1d_18
  ssl-video zoo show cost_r50 cost_variant=a frames=16
  ssl-video zoo show timm:resnet18 modality=audio --json"""

ZOO_EXAMPLE = """examples:
  ssl-video zoo list                                  names, parameters, GFLOPs, feature sizes
  ssl-video zoo show r2plus1d_18                      input contract (frames, fps, crop, mean/std ...)
  ssl-video zoo explain encoders/cost_r18 --out views.png
Any 2-D timm model: timm:<model> (see `ssl-video zoo list`)."""

EXPLAIN_EXAMPLE = """example:
  ssl-video zoo explain encoders/cost_r18 --out cost_views.png
For CoST(a) the coefficients are parameters; CoST(b) predicts them from the input, so without real clips
this command feeds --clips random clips at the encoder's default input (the title says so); for real
clips use ssl_video.models.cost.view_contributions(encoder, clips)."""


def register(subparsers) -> None:
    zoo = add_group(subparsers, "zoo", "list and inspect the encoders", ZOO_EXAMPLE)
    cmd = add_command(zoo, "list", "every encoder with parameters, GFLOPs and feature size", run_list,
                      LIST_EXAMPLE + "\n\n" + TIMM_HELP)
    cmd.add_argument("--json", action="store_true", help="print a JSON list of objects")

    cmd = add_command(zoo, "show", "the full input contract (spec) and options of one encoder", run_show,
                      SHOW_EXAMPLE)
    cmd.add_argument("name", help="encoder name (see `ssl-video zoo list`) or timm:<model>")
    cmd.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="options or input settings, e.g. width=0.5")
    cmd.add_argument("--json", action="store_true", help="print one JSON object")

    cmd = add_command(zoo, "explain", "plot the share of spatial and temporal views in a CoST encoder",
                      run_explain, EXPLAIN_EXAMPLE)
    cmd.add_argument("encoder_dir", help="an exported CoST encoder (ssl-video export ... --out DIR)")
    cmd.add_argument("--out", required=True, help="output image (.png)")
    cmd.add_argument("--clips", type=int, default=2, help="random clips for CoST(b) (default 2)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the random clips (default 0)")


def _default_input(row: dict) -> str:
    spec = row["spec"]
    if row["modality"] == "video":
        fps = f" @{spec['fps']:g}fps" if spec.get("fps") else ""
        return f"{spec['frames']}x{spec['crop_size']}x{spec['crop_size']}{fps}"
    return f"{spec['n_mels']}x{spec['time_frames']} ({spec['seconds']:g}s @{spec['sample_rate'] / 1000:g}kHz)"


def run_list(args) -> int:
    from ssl_video.models.registry import describe_encoder, list_encoders

    rows = [describe_encoder(name) for name in list_encoders()]
    if args.json:
        keys = ("name", "modality", "params", "gflops", "feature_dim", "feature_map", "input_shape", "summary")
        print(json.dumps([{key: row[key] for key in keys} for row in rows], indent=1))
        return 0
    header = f"{'name':<16}{'modality':<10}{'params':>9}{'GFLOPs':>9}{'dim':>6}  {'feature map':<16}default input"
    print(header)
    print("-" * len(header))
    for row in rows:
        gflops = f"{row['gflops']:.1f}" if row["gflops"] is not None else "n/a"
        fmap = "x".join(map(str, row["feature_map"]))
        print(f"{row['name']:<16}{row['modality']:<10}{row['params'] / 1e6:>8.1f}M{gflops:>9}"
              f"{row['feature_dim']:>6}"
              f"  {fmap:<16}{_default_input(row)}")
    print("\nGFLOPs: multiply-adds of one clip at the default input. Tiny CPU variants: width=0.125.")
    print(TIMM_HELP)
    return 0


def run_show(args) -> int:
    from ssl_video.config import parse_overrides
    from ssl_video.models.registry import describe_encoder

    overrides = parse_overrides(args.overrides)
    nested = sorted(key for key, value in overrides.items() if isinstance(value, dict))
    if nested:
        raise UserError(f"zoo show takes plain KEY=VALUE options, not dotted keys: {', '.join(nested)}")
    info = describe_encoder(args.name, **overrides)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['name']}: {info['summary']}")
    print(f"  parameters   {info['params']:,}")
    print(f"  GFLOPs       {info['gflops']} (multiply-adds, one sample at the input below)")
    print(f"  input        {' x '.join(map(str, info['input_shape']))} per sample")
    feature_map = " x ".join(map(str, info["feature_map"]))
    print(f"  output       forward: {info['feature_dim']}; forward_features: {feature_map}")
    options = ", ".join(f"{k}={v!r}" for k, v in info["options"].items()) or "none"
    print(f"  options      {options}")
    print("  spec")
    for key, value in info["spec"].items():
        if value is not None and key not in ("name", "source"):
            print(f"    {key:<12} {value}")
    print(f"  source       {info['spec']['source']}")
    return 0


def run_explain(args) -> int:
    import torch

    from ssl_video.evaluation.plots import view_contributions_chart
    from ssl_video.models.cost import cost_layers, view_contributions
    from ssl_video.models.io import load_encoder

    encoder = load_encoder(args.encoder_dir)
    layers = cost_layers(encoder)
    if not layers:
        raise UserError(f"{args.encoder_dir} holds '{encoder.encoder_name}', which has no CoST layers")
    variant = layers[0][1].variant
    title = f"{encoder.encoder_name} CoST({variant}): {args.encoder_dir}"
    clips = None
    if variant == "b":
        if args.clips < 1:
            raise UserError("--clips must be >= 1")
        generator = torch.Generator().manual_seed(args.seed)
        clips = torch.randn((args.clips, *encoder.spec.input_shape()), generator=generator)
        title += f"\n(coefficients on {args.clips} random clips; they depend on the input)"
    contributions = view_contributions(encoder, clips)
    view_contributions_chart(args.out, contributions, title)
    print(f"{'layer':<22}{'H-W':>7}{'T-W':>7}{'T-H':>7}")
    for name, share in contributions.items():
        print(f"{name:<22}" + "".join(f"{float(v):>7.3f}" for v in share))
    print(f"wrote {args.out}")
    return 0
