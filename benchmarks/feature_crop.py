"""Feature Crop against input-space crops: wall time and peak memory of one STiCA training step.

With Feature Crop, the K crops of a view are slices of the view's last feature map, so a view costs one
backbone pass whatever K is. The baseline takes the same K crop boxes in INPUT space (each box scaled
from the feature grid to pixels, no resizing) and sends every crop through the backbone; the crop pairs
and losses are the method's own (:func:`ssl_video.methods.stica.crop_pair_losses`), and the audio-visual
term uses the full views in both variants. K crops per view alternate large and small spatial windows
(published sizes; every large crop paired across the views).

Time: forward + backward + AdamW step, configurations interleaved round by round in one process, median
per configuration. Peak memory: CUDA's peak allocation during a step on a GPU; on the CPU, the peak
resident set over two steps minus the resident set before them, in a fresh process per configuration
(Linux: reads /proc/self/statm).

Prints a table and, as its last line, one JSON object with ``ratio_8_vs_1_feature_crops`` (target
<= 1.25) and ``ratio_feature_vs_input_8_crops`` (target <= 0.35), both wall-time ratios.

  python benchmarks/feature_crop.py [--width 0.25] [--frames 8] [--size 112] [--batch 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stica_step import build_step, synchronize  # noqa: E402
from ssl_video.losses import cross_modal_nce  # noqa: E402
from ssl_video.methods.stica import FeatureCropConfig, STiCA, crop_boxes, crop_pair_losses  # noqa: E402

CROP_COUNTS = (1, 2, 4, 8)
VARIANTS = ("feature", "input")


def crops_config(k: int) -> FeatureCropConfig:
    large = (k + 1) // 2
    return FeatureCropConfig(spatial_large=large, spatial_small=k - large, temporal_large=0, temporal_small=0,
                             pair_every_large=True)


def build(args, k: int):
    return build_step(args.encoder, args.width, args.frames, args.size, args.batch, args.device, crops_config(k))


def input_crop_loss(method: STiCA, batch: dict) -> torch.Tensor:
    """The same loss with every crop taken from the input clip and sent through the backbone."""
    cfg = method.cfg
    video = batch["video"]
    maps = [method.video_features(video[:, view]) for view in range(2)]  # full views: the audio-visual term
    audio = method.embed_audio(batch["audio"])
    loss_av = 0.5 * sum(cross_modal_nce(method.embed_map(m), audio, cfg.cross_temperature) for m in maps)
    grid = tuple(maps[0].shape[2:])
    scale = [size // cells for size, cells in zip(video.shape[3:], grid)]
    boxes = [crop_boxes(grid, cfg.crops, method.crop_rng()) for _ in range(2)]

    def embed(view: int, box) -> torch.Tensor:
        st, sh, sw = scale
        pixels = video[:, view, :, box.t0 * st:box.t1 * st, box.h0 * sh:box.h1 * sh, box.w0 * sw:box.w1 * sw]
        return method.embed_map(method.video_features(pixels))

    loss_crop, _ = crop_pair_losses(boxes, embed, cfg.crops, cfg.within_temperature)
    return cfg.av_weight * loss_av + cfg.crop_weight * loss_crop


def train_step(method: STiCA, optimizer, batch: dict, variant: str) -> None:
    loss = method(batch)["loss"] if variant == "feature" else input_crop_loss(method, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_memory_mb(args, variant: str, k: int) -> float:
    """Peak memory of a training step over what the built model holds: CUDA allocator peak during the
    second step, or (CPU) the peak resident set over two steps minus the resident set before them."""
    method, optimizer, batch = build(args, k)
    if args.device.startswith("cuda"):
        train_step(method, optimizer, batch, variant)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(method, optimizer, batch, variant)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # ru_maxrss only grows (a fresh process per configuration); it is in KiB on Linux
    base = _resident_bytes()
    for _ in range(2):
        train_step(method, optimizer, batch, variant)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20


def memory_in_child(args, variant: str, k: int) -> float:
    if args.device.startswith("cuda"):
        return peak_memory_mb(args, variant, k)
    command = [sys.executable, __file__, "--memory-of", variant, str(k), *args.forward]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="r2plus1d_18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112, help="crop size (112 gives the published 7x7 grid)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-of", nargs=2, metavar=("VARIANT", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.forward = ["--encoder", args.encoder, "--width", str(args.width), "--frames", str(args.frames),
                    "--size", str(args.size), "--batch", str(args.batch), "--device", args.device]
    if args.memory_of:
        print(peak_memory_mb(args, args.memory_of[0], int(args.memory_of[1])))
        return

    configs = [(variant, k) for variant in VARIANTS for k in CROP_COUNTS]
    built = {config: build(args, config[1]) for config in configs}
    for config, (method, optimizer, batch) in built.items():  # warm-up: allocator, kernels
        train_step(method, optimizer, batch, config[0])
    times: dict[tuple[str, int], list[float]] = {config: [] for config in configs}
    for _ in range(args.rounds):
        for config, (method, optimizer, batch) in built.items():
            synchronize(args.device)
            start = time.perf_counter()
            train_step(method, optimizer, batch, config[0])
            synchronize(args.device)
            times[config].append(time.perf_counter() - start)
    del built
    seconds = {config: statistics.median(values) for config, values in times.items()}
    memory = {config: memory_in_child(args, *config) for config in configs}

    print(f"{args.encoder} width {args.width}, {args.frames}x{args.size}x{args.size}, batch {args.batch} x 2 views, "
          f"{args.device}, median of {args.rounds} rounds\n")
    print("| crops per view | feature crop s | input crop s | feature / input | feature MB | input MB |")
    print("|---|---|---|---|---|---|")
    for k in CROP_COUNTS:
        f, i = seconds[("feature", k)], seconds[("input", k)]
        print(f"| {k} | {f:.3f} | {i:.3f} | {f / i:.2f} | {memory[('feature', k)]:.0f} | "
              f"{memory[('input', k)]:.0f} |")
    result = {
        "ratio_8_vs_1_feature_crops": round(seconds[("feature", 8)] / seconds[("feature", 1)], 3),
        "ratio_feature_vs_input_8_crops": round(seconds[("feature", 8)] / seconds[("input", 8)], 3),
        "memory_ratio_8_vs_1_feature_crops": round(memory[("feature", 8)] / max(memory[("feature", 1)], 1e-9), 3),
        "memory_ratio_feature_vs_input_8_crops": round(memory[("feature", 8)] / max(memory[("input", 8)], 1e-9), 3),
        "step_seconds": {f"{variant}_{k}": round(seconds[(variant, k)], 4) for variant, k in configs},
        "peak_mb": {f"{variant}_{k}": round(memory[(variant, k)], 1) for variant, k in configs},
        "device": args.device,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
