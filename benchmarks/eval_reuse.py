"""Feature reuse across splits: a 3-split linear probe against a 1-split one, cold cache each time.

Features are extracted once for every video of the dataset and shared by all splits, so three splits
should cost little more than one. Prints a table and, as the last line, one JSON object with
``ratio_three_splits_vs_one`` (target <= 1.3) and ``extract_clips_per_s``.

  python benchmarks/eval_reuse.py [--encoder r2plus1d_18] [--width 0.25] [--videos-per-class 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_video.data.synth import generate_synthetic_dataset  # noqa: E402
from ssl_video.evaluation.runner import EvalInputs, run_linear_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="r2plus1d_18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--videos-per-class", type=int, default=10)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_synthetic_dataset(tmp / "data", classes=args.classes, videos_per_class=args.videos_per_class,
                                   seconds=2.0, size=(args.size, args.size), progress=False, workers=2)

        def probe(splits: list[str], tag: str) -> tuple[float, dict]:
            inputs = EvalInputs(encoder=args.encoder, encoder_args={"width": args.width}, dataset="synthetic",
                                root=str(tmp / "data"), splits=splits, clips=args.clips, frames=args.frames,
                                fps=8.0, crop=args.size, resize=args.size, workers=args.workers,
                                cache_dir=str(tmp / f"cache_{tag}"), out=str(tmp / f"out_{tag}"), progress=False)
            start = time.perf_counter()
            report = run_linear_probe(inputs)
            return time.perf_counter() - start, report

        probe(["1"], "warmup")  # imports, first-call costs
        one, report_one = probe(["1"], "one")
        three, report_three = probe(["1", "2", "3"], "three")
    clips = report_three["videos_evaluated"] * args.clips
    extract_s = report_three["extraction_seconds"]
    rows = [("1 split", one, report_one["mean"]["top1"]), ("3 splits", three, report_three["mean"]["top1"])]
    print("| run | wall s | mean top-1 |\n|---|---|---|")
    for name, seconds, top1 in rows:
        print(f"| {name} | {seconds:.2f} | {top1:.3f} |")
    print(json.dumps({
        "ratio_three_splits_vs_one": round(three / one, 3),
        "extract_clips_per_s": round(clips / extract_s, 2) if extract_s else None,
        "one_split_s": round(one, 2), "three_splits_s": round(three, 2),
        "videos": report_three["videos_evaluated"], "clips_per_video": args.clips,
        "encoder": f"{args.encoder} width {args.width}", "frames": args.frames, "size": args.size,
    }))


if __name__ == "__main__":
    main()
