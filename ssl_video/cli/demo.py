"""``ssl-video demo``: the embedded default job on synthetic data, no download needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ssl_video.cli import add_command

EXAMPLE = """example:
  ssl-video demo --out demo_out
writes demo_out/data (synthetic UCF101-layout dataset) and demo_out/report.json"""


def register(subparsers) -> None:
    demo = add_command(subparsers, "demo", "synthesise a small audio-visual dataset and run the pipeline on it",
                       run_demo, EXAMPLE)
    demo.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--videos-per-class", type=int, default=30, help="synthetic videos per class (default 30)")


def run_demo(args) -> int:
    from ssl_video.data.check import check_dataset, format_check
    from ssl_video.data.synth import generate_synthetic_dataset

    out = Path(args.out)
    data_dir = out / "data"
    started = time.time()
    print(f"[1/2] writing the synthetic dataset to {data_dir}")
    summary = generate_synthetic_dataset(data_dir, videos_per_class=args.videos_per_class, seed=args.seed,
                                         workers=2)
    print("[2/2] checking every video of it")
    check = check_dataset("synthetic", root=str(data_dir))
    print(format_check(check))
    report = {"dataset": summary, "data_check": check, "seconds": time.time() - started}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nreport: {out / 'report.json'}")
    return 0 if check["usable"] else 1
