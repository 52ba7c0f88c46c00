"""``ssl-video eval ...``: one command per registered protocol (:mod:`ssl_video.evaluation.protocols`), plus
``suite``.

Shared argument groups (encoder, dataset, clip protocol, run) are defined once here; a protocol's own knobs
are its few flags and dotted ``KEY=VALUE`` overrides of its settings. Handlers parse, build the settings and
the inputs, call the protocol's run function and print its summary; heavy imports happen in the protocols.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ssl_video.cli import add_command, add_group
from ssl_video.errors import UserError
from ssl_video.evaluation.protocols import default_out, get_protocol, list_protocols

EPILOG = """examples:
  ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1,2,3
  ssl-video eval retrieval --encoder r2plus1d_18 --dataset hmdb51 --root /data/hmdb51
  ssl-video eval finetune --encoder encoders/x --dataset ucf101 --root /data/ucf101 --splits 1 optim.lr=0.005
  ssl-video eval pooling --features feats.h5 --labels labels.csv --head all --out runs/eval/pooling
  ssl-video eval suite eval/smoke_synthetic.yaml --encoder encoders/x --root synthetic=data/synth
"""

SUITE_EPILOG = """examples:
  ssl-video eval suite eval/linear_probe.yaml --encoder encoders/x --root ucf101=/data/ucf101 --root hmdb51=/data/hmdb51
  ssl-video eval suite eval/smoke_synthetic.yaml --encoder demo_out/encoder --root synthetic=demo_out/data/eval
  ssl-video eval suite eval/retrieval.yaml --encoder r2plus1d_18 --data-root /data   (/data/ucf101, /data/hmdb51)

Runs every entry of the suite on one encoder; each writes its own report under OUT/<entry>/, and
OUT/report.json + OUT/report.md combine them. Protocols: {protocols}. Every entry's protocol and settings are
checked before the first one runs. Suites shipped in eval/: linear_probe.yaml, retrieval.yaml, finetune.yaml,
pooling.yaml, smoke_synthetic.yaml. A fine-tuning entry stopped by a signal exits with code 3: rerun to resume."""

DATASETS = ("ucf101", "hmdb51", "synthetic", "kinetics")


def register(subparsers) -> None:
    group = add_group(subparsers, "eval", "Evaluate encoders and their features.", EPILOG, slurm=True)
    for protocol in list_protocols():
        _add_protocol(group, protocol)
    names = ", ".join(p.name for p in list_protocols())
    cmd = add_command(group, "suite", "Run a suite of protocols (eval/<suite>.yaml) on one encoder.", run_suite,
                      SUITE_EPILOG.format(protocols=names))
    cmd.add_argument("suite", help="suite YAML file")
    cmd.set_defaults(_slurm_check=check_suite)
    _encoder_group(cmd, required=True)
    cmd.add_argument("--root", action="append", default=[], metavar="DATASET=DIR",
                     help="where a dataset lives (repeatable)")
    cmd.add_argument("--data-root", metavar="DIR", help="a folder holding one folder per dataset name")
    _run_group(cmd, "runs/eval/<suite name>/<encoder>", cache=True)


# ---------------------------------------------------------------------------------------------- shared groups


def _encoder_group(cmd, required: bool) -> None:
    enc = cmd.add_argument_group("encoder")
    enc.add_argument("--encoder", required=required, metavar="E",
                     help="exported encoder directory (config.json + model.safetensors) or zoo name (random init)")
    enc.add_argument("--encoder-args", nargs="*", default=[], metavar="KEY=VALUE",
                     help="constructor overrides for a zoo name (e.g. width=0.25)")


def _dataset_group(cmd, required: bool) -> None:
    data = cmd.add_argument_group("dataset")
    data.add_argument("--dataset", required=required, choices=DATASETS)
    data.add_argument("--root", help="directory holding the official layout")
    data.add_argument("--videos", help="videos directory (instead of --root)")
    data.add_argument("--split-dir", help="split-file directory (instead of --root)")
    data.add_argument("--splits", help="comma-separated split numbers (default: all)")


def _clip_group(cmd, clips: int) -> None:
    clip = cmd.add_argument_group("clip protocol (defaults: the encoder's input contract)")
    clip.add_argument("--clips", type=int, help=f"uniformly spaced clips per video (default {clips})")
    clip.add_argument("--frames", type=int, help="frames per clip")
    clip.add_argument("--fps", type=float, help="frame rate of a clip")
    clip.add_argument("--resize", type=int, help="short side the frames are decoded at, before the crop")
    clip.add_argument("--crop", type=int, help="crop size")


def _run_group(cmd, out: str, cache: bool, batch_size: int = 8) -> None:
    run = cmd.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help=f"report directory (default {out})")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    run.add_argument("--batch-size", type=int, help=f"videos per batch through the encoder (default {batch_size})")
    run.add_argument("--workers", type=int, help="data loader workers (default 2)")
    run.add_argument("--seed", type=int, default=0, help="random initialisation, splits and training (default 0)")
    if cache:
        run.add_argument("--cache-dir", metavar="DIR", help="feature cache (default ~/.cache/ssl_video)")
        run.add_argument("--no-cache", action="store_true", help="extract again and do not store features")


def _add_protocol(group, protocol) -> None:
    epilog = "examples:\n" + "\n".join(" \\\n".join(textwrap.wrap(
        f"ssl-video eval {protocol.name} {e}", 110, initial_indent="  ", subsequent_indent="      ",
        break_on_hyphens=False)) for e in protocol.examples)
    cmd = add_command(group, protocol.name, protocol.description, run_protocol,
                      epilog + "\n\n" + textwrap.fill(protocol.notes, 110, break_on_hyphens=False))
    cmd.set_defaults(protocol=protocol.name, _slurm_check=check_protocol)
    groups = protocol.groups
    if "encoder" in groups:
        _encoder_group(cmd, protocol.inputs_required)
    if "dataset" in groups:
        _dataset_group(cmd, protocol.inputs_required)
    if "clip" in groups:
        _clip_group(cmd, protocol.defaults.get("clips", 10))
    out = f"runs/eval/{protocol.name}/<encoder>" + ("-<dataset>" if "dataset" in groups else "")
    if protocol.name == "pooling":
        out += ", or <features file name> with --features"
    _run_group(cmd, out, "cache" in groups, protocol.defaults.get("batch_size", 8))
    own = cmd.add_argument_group(f"{protocol.name} settings")
    for flag in protocol.flags:
        kwargs = {"dest": f"setting_{flag.key}", "help": flag.help, "metavar": flag.metavar or flag.key.upper(), "choices": flag.choices}
        if flag.kind == "switch":
            kwargs = {"dest": kwargs["dest"], "help": flag.help, "action": "store_const", "const": True}
        elif flag.choices:
            kwargs["metavar"] = None
        own.add_argument(flag.option, **kwargs)
    target = "the training recipe" if protocol.overrides_key else "the settings"
    cmd.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                     help=f"dotted overrides of {target} (put them before --encoder-args)")


# ---------------------------------------------------------------------------------------------- handlers


def _flag_value(kind: str, raw):
    import yaml

    if raw is None or kind == "switch":
        return raw
    if kind == "list":
        return [yaml.safe_load(item) for item in raw.split(",") if item.strip()]
    return yaml.safe_load(raw)


def _shared(args) -> dict:
    """The shared groups' values (absent groups and unset flags are left out: the protocol's defaults)."""
    from ssl_video.config import parse_overrides

    names = ("encoder", "dataset", "root", "videos", "split_dir", "clips", "frames", "fps", "resize", "crop",
             "device", "batch_size", "workers", "seed", "cache_dir", "out")
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "splits", None):
        given["splits"] = [s.strip() for s in args.splits.split(",") if s.strip()]
    given["encoder_args"] = parse_overrides(getattr(args, "encoder_args", []))
    given["use_cache"] = not getattr(args, "no_cache", False)
    given["progress"] = True
    return given


def _finish(call, lines, out: str) -> int:
    """Run ``call()``; print the report's lines, or why it stopped; the exit code."""
    import sys

    from ssl_video.errors import EXIT_NONFINITE, EXIT_STOPPED, NonFiniteLoss

    try:
        report = call()
    except NonFiniteLoss as exc:
        print(f"ssl-video: error: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    if report.get("status", "completed") != "completed":
        where = f"{report['entry']}: " if "entry" in report else ""
        print(f"{where}split {report['split']} {report['status']} at step {report['step']}"
              f"{'/' + str(report['total_steps']) if 'total_steps' in report else ''}: run the same command again "
              "to resume")
        return EXIT_STOPPED if report["status"] == "stopped" else 0
    for line in lines(report):
        print(line)
    print(f"wrote {out}/report.json and report.md")
    return 0


def check_protocol(args) -> None:
    """What a Slurm submission checks before it submits: settings, inputs, the dataset root and splits."""
    from ssl_video.data.datasets import EVAL_FLAGS, load_layout
    from ssl_video.evaluation.protocols import make_inputs, settings_from_args

    protocol = get_protocol(args.protocol)
    values = {f.key: _flag_value(f.kind, getattr(args, f"setting_{f.key}")) for f in protocol.flags}
    settings_from_args(protocol, values, args.overrides)
    inputs = make_inputs(protocol, check_device=False, **_shared(args))
    if "dataset" in protocol.groups and inputs.dataset:
        layout = load_layout(inputs.dataset, root=inputs.root, videos=inputs.videos, splits=inputs.split_dir,
                             names=EVAL_FLAGS)
        unknown = [s for s in (inputs.splits or []) if s not in layout.splits]
        if unknown:
            raise UserError(f"--splits: {inputs.dataset} has no split {', '.join(unknown)} "
                            f"(available: {', '.join(layout.splits)})")


def check_suite(args) -> None:
    from ssl_video.evaluation.suite import load_suite, suite_runs

    suite = load_suite(args.suite)
    out = args.out or default_out(suite.name, args.encoder)
    suite_runs(suite, {**_shared(args), "out": out}, _roots(args), args.data_root,
               check_device=False)


def _roots(args) -> dict[str, str]:
    roots = {}
    for item in args.root:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--root expects DATASET=DIR, got {item!r}")
        roots[name] = path
    return roots


def run_protocol(args) -> int:
    from ssl_video.evaluation.protocols import make_inputs, settings_from_args

    protocol = get_protocol(args.protocol)
    values = {f.key: _flag_value(f.kind, getattr(args, f"setting_{f.key}")) for f in protocol.flags}
    settings = settings_from_args(protocol, values, args.overrides)
    inputs = make_inputs(protocol, **_shared(args))
    features = getattr(settings, "features", None)
    if args.out is None and not inputs.encoder and features:  # eval pooling --features F: named after F
        inputs.out = default_out(protocol.name, Path(str(features).rstrip("/")).stem)
    return _finish(lambda: protocol.run(inputs, settings), protocol.lines, inputs.out)


def run_suite(args) -> int:
    from ssl_video.evaluation.report import markdown_table
    from ssl_video.evaluation.suite import load_suite
    from ssl_video.evaluation.suite import run_suite as run

    suite = load_suite(args.suite)
    roots = _roots(args)
    base = {**_shared(args), "out": args.out or default_out(suite.name, args.encoder)}
    return _finish(lambda: run(suite, base, roots, args.data_root),
                   lambda combined: [markdown_table(combined["table"])], base["out"])
