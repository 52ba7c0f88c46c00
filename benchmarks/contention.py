"""Training steps/s alone and beside one busy process, for the shipped thread settings and the old default.

Settings (each a fresh worker process, so the OpenMP runtime starts with its environment):
  shipped  ssl_video.threads: compute threads from the CPUs this process may use (affinity, cgroup quota,
           less the recipe's loader workers) and OMP_WAIT_POLICY=PASSIVE (idle threads sleep)
  default  what a process got before: no OMP_* variables, torch's own thread count
Conditions: alone, and beside one busy process (a spinning Python loop, or a one-thread numpy matmul
loop with --busy numpy) started just before the measurement and stopped after it. Each worker builds the
tiny STiCA step of the demo recipe once (random batch) and the conditions alternate in rounds, so
machine noise hits them alike. Other load on the machine is not controlled: run it on a quiet machine
for absolute figures; the slowdown ratio is what this script is for.

The last line printed is one JSON object: steps_per_s[setting][condition], slowdown_beside_busy
(alone / beside, shipped setting), slowdown_beside_busy_default (the same for the old default), the
threads each setting used, and the load average when the run started.

  python benchmarks/contention.py [--steps 4] [--rounds 2] [--batch 8] [--busy python|numpy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_video.threads import plan_threads  # noqa: E402  (no torch import)

BUSY = {
    "python": "while True:\n    pass\n",
    "numpy": ("import numpy as np\na = np.random.rand(384, 384)\nwhile True:\n    a = a @ a\n"
              "    a /= abs(a).max()\n"),
}
OMP_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def worker(args) -> None:
    """Build the step once, then answer 'run N' lines with the seconds N steps took."""
    import torch

    from ssl_video.recipe import load_recipe
    from ssl_video.threads import apply

    if args.setting == "shipped":
        apply(plan_threads(args.workers))
    recipe = load_recipe(ROOT / "recipes" / "stica_tiny_synthetic.yaml", [f"data.root={ROOT}"])
    from ssl_video.methods.stica import STiCA

    torch.manual_seed(0)
    method = STiCA.from_recipe(recipe).train()
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    clip = recipe.data.clip
    audio_shape = method.audio_encoder.spec.input_shape()[-2:]
    batch = {"video": torch.randn(args.batch, 2, 3, clip.frames, clip.video.crop, clip.video.crop),
             "audio": torch.randn(args.batch, 1, *audio_shape)}

    def step():
        loss = method(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        count = int(line.split()[1])
        start = time.perf_counter()
        for _ in range(count):
            step()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def start_worker(setting: str, args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    if setting == "shipped":
        from ssl_video.threads import configure_environment

        configure_environment(plan_threads(args.workers), env)
    command = [sys.executable, __file__, "--worker", setting, "--batch", str(args.batch),
               "--workers", str(args.workers)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def ask(proc: subprocess.Popen, message: str | None = None) -> dict:
    if message is not None:
        proc.stdin.write(message + "\n")
        proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a benchmark worker stopped")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--busy", choices=sorted(BUSY), default="python")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers the shipped plan accounts for (default: the demo recipe's)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers is None:
        from ssl_video.recipe import load_recipe

        args.workers = load_recipe(ROOT / "recipes" / "stica_tiny_synthetic.yaml",
                                   [f"data.root={ROOT}"]).data.num_workers
    if args.worker:
        args.setting = args.worker
        worker(args)
        return

    load = os.getloadavg()
    settings = ("shipped", "default")
    procs = {name: start_worker(name, args) for name in settings}
    threads = {}
    elapsed = {name: {"alone": 0.0, "beside_busy": 0.0} for name in settings}
    busy_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        for name, proc in procs.items():
            threads[name] = ask(proc)["threads"]
        for r in range(args.rounds):
            for name, proc in procs.items():
                elapsed[name]["alone"] += ask(proc, f"run {args.steps}")["seconds"]
                busy = subprocess.Popen([sys.executable, "-c", BUSY[args.busy]], env=busy_env)
                try:
                    time.sleep(0.3)
                    elapsed[name]["beside_busy"] += ask(proc, f"run {args.steps}")["seconds"]
                finally:
                    busy.kill()
                    busy.wait()
                print(f"round {r + 1}: {name}: alone {elapsed[name]['alone']:.1f} s, beside busy "
                      f"{elapsed[name]['beside_busy']:.1f} s (cumulative)", file=sys.stderr)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    steps = args.steps * args.rounds
    rates = {name: {cond: round(steps / sec, 4) for cond, sec in conds.items()} for name, conds in elapsed.items()}
    print(json.dumps({
        "steps_per_s": rates,
        "slowdown_beside_busy": round(rates["shipped"]["alone"] / rates["shipped"]["beside_busy"], 3),
        "slowdown_beside_busy_default": round(rates["default"]["alone"] / rates["default"]["beside_busy"], 3),
        "shipped_vs_default_beside_busy": round(rates["shipped"]["beside_busy"] / rates["default"]["beside_busy"], 3),
        "threads": threads,
        "busy": args.busy,
        "batch": args.batch,
        "steps": steps,
        "cpus": plan_threads(args.workers).cpus,
        "loadavg_at_start": [round(v, 2) for v in load],
    }))


if __name__ == "__main__":
    main()
