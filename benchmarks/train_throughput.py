"""Throughput of the STiCA training step (forward, backward, AdamW) in clips per second.

A clip is one sample of the batch (its two augmented views and its audio), as in the trainer's
``clips_per_s``. Inputs are random tensors already on the device, so this measures the model, not the
data pipeline (``benchmarks/decode.py`` measures decoding). Variants run interleaved, round by round, in
one process; each is compared with the float32 eager baseline measured beside it.

Variants: ``fp32`` (baseline), ``bf16`` (autocast, as ``trainer.mixed_precision=bf16``), ``channels_last``
(channels-last-3d weights and inputs), ``compile`` (``torch.compile`` of the method, as ``trainer.compile``),
joined with ``+`` (e.g. ``bf16+channels_last+compile``). Default: ``fp32`` on the CPU; on a GPU also bf16,
bf16+channels_last and bf16+compile.

Prints a table and, as its last line, one JSON object: ``clips_per_s`` per variant and ``ratio_vs_fp32``.

  python benchmarks/train_throughput.py [--encoder r2plus1d_18] [--width 1.0] [--frames 16] [--size 112]
      [--batch 8] [--variants fp32,bf16] [--rounds 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stica_step import build_step, synchronize  # noqa: E402

OPTIONS = {"fp32", "bf16", "channels_last", "compile"}


def parse_variant(name: str) -> set[str]:
    parts = set(name.split("+"))
    unknown = parts - OPTIONS
    if unknown:
        raise SystemExit(f"unknown variant option(s) {sorted(unknown)}; choose from {sorted(OPTIONS)}")
    return parts


def make_variant(args, name: str):
    options = parse_variant(name)
    method, optimizer, batch = build_step(args.encoder, args.width, args.frames, args.size, args.batch,
                                          args.device, audio_encoder=args.audio_encoder)
    if "channels_last" in options:
        # convolutions follow their weights' memory format, so each view's input is converted by its first conv;
        # the video encoder's 3-D convs go channels-last-3d, the audio encoder's 2-D convs channels-last
        method.video_encoder.to(memory_format=torch.channels_last_3d)
        method.audio_encoder.to(memory_format=torch.channels_last)
    model = torch.compile(method) if "compile" in options else method
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    autocast = (lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)) if "bf16" in options \
        else contextlib.nullcontext

    def step() -> None:
        with autocast():
            loss = model(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="r2plus1d_18")
    parser.add_argument("--audio-encoder", default="audio_resnet9")
    parser.add_argument("--width", type=float, default=None, help="default 1.0 on a GPU, 0.25 on the CPU")
    parser.add_argument("--frames", type=int, default=None, help="default 16 on a GPU, 8 on the CPU")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=None, help="clips per step; default 16 on a GPU, 4 on the CPU")
    parser.add_argument("--variants", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (compilation, autotuning)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    args.width = args.width if args.width is not None else (1.0 if gpu else 0.25)
    args.frames = args.frames if args.frames is not None else (16 if gpu else 8)
    args.batch = args.batch if args.batch is not None else (16 if gpu else 4)
    variants = (args.variants or ("fp32,bf16,bf16+channels_last,bf16+compile" if gpu else "fp32")).split(",")
    if "fp32" not in variants:
        variants.insert(0, "fp32")
    if gpu:
        torch.backends.cudnn.benchmark = True

    steps = {name: make_variant(args, name) for name in variants}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    synchronize(args.device)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in steps.items():
            synchronize(args.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            synchronize(args.device)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - start))
    clips_per_s = {name: statistics.median(values) for name, values in rates.items()}

    device_name = torch.cuda.get_device_name() if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.encoder} width {args.width}, {args.frames}x{args.size}x{args.size}, batch {args.batch} "
          f"(x 2 views + audio), {device_name}, median of {args.rounds} rounds\n")
    print("| variant | clips/s | vs fp32 |\n|---|---|---|")
    for name in variants:
        print(f"| {name} | {clips_per_s[name]:.1f} | {clips_per_s[name] / clips_per_s['fp32']:.2f} |")
    print(json.dumps({
        "clips_per_s": {name: round(value, 2) for name, value in clips_per_s.items()},
        "ratio_vs_fp32": {name: round(value / clips_per_s["fp32"], 3) for name, value in clips_per_s.items()},
        "encoder": args.encoder, "width": args.width, "frames": args.frames, "size": args.size,
        "batch": args.batch, "device": device_name,
    }))


if __name__ == "__main__":
    main()
