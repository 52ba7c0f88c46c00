"""Which pooling heads can tell videos apart by WHICH feature clusters occur, not by their mean?

The generated task: ``P`` random base directions ``b_1..b_P`` in ``D`` dimensions; every class owns a
different set of ``S`` bases. A video of a class is a shuffled sequence of frame pairs: each pair picks
one of the class's bases ``b`` and emits the two frames ``mu + b + noise`` and ``mu - b + noise``. So
every class draws its frames from its own cluster centres ``mu +- b``, yet the mean frame of every video
of every class is exactly ``mu`` plus averaged noise: average pooling sees no class signal at all
(chance level), while a head that notices which clusters are present can solve the task.

Every head gets the same data, seed, optimiser and number of epochs (protocol of
``ssl_video.evaluation.pooling``). Prints a Markdown table, then one JSON object on the last line:
``{"task": ..., "chance": ..., "accuracy": {head: test top-1}, ...}``.

    python benchmarks/pooling_cluster_task.py            # about two minutes on 2 CPU cores
    python benchmarks/pooling_cluster_task.py --epochs 10 --heads netvlad,avg
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def make_task(
    classes: int = 8,
    bases: int = 12,
    per_class: int = 3,
    dim: int = 32,
    train_per_class: int = 60,
    test_per_class: int = 25,
    pairs: tuple[int, int] = (4, 15),
    noise: float = 0.35,
    seed: int = 0,
):
    """Return ``(train_x, train_y, test_x, test_y, class_bases)`` of the cluster-set task."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(bases, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    mu = rng.normal(size=dim)
    subsets: list[tuple[int, ...]] = []
    while len(subsets) < classes:
        s = tuple(sorted(rng.choice(bases, size=per_class, replace=False).tolist()))
        if s not in subsets:
            subsets.append(s)

    def video(c: int) -> np.ndarray:
        n = int(rng.integers(pairs[0], pairs[1] + 1))
        chosen = directions[rng.choice(subsets[c], size=n)]
        frames = np.concatenate([chosen, -chosen]) + mu + noise * rng.normal(size=(2 * n, dim))
        return frames[rng.permutation(2 * n)].astype(np.float32)

    def split(per: int):
        ys = np.repeat(np.arange(classes), per)
        return [video(int(c)) for c in ys], ys.astype(np.int64)

    train_x, train_y = split(train_per_class)
    test_x, test_y = split(test_per_class)
    return train_x, train_y, test_x, test_y, subsets


def main(argv: list[str] | None = None) -> int:
    from ssl_video.evaluation.pooling import ALL_HEADS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", default=",".join(ALL_HEADS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from ssl_video.evaluation.pooling import PoolingData, PoolingSettings, evaluate_heads
    from ssl_video.evaluation.report import markdown_table

    torch.set_num_threads(args.threads)
    train_x, train_y, test_x, test_y, subsets = make_task(seed=args.seed)
    classes = len(subsets)
    data = PoolingData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        train_names=[f"train{i}" for i in range(len(train_x))],
        test_names=[f"test{i}" for i in range(len(test_x))],
        classes=[str(s) for s in subsets],
        multilabel=False,
        split="generated",
    )
    settings = PoolingSettings(
        clusters=args.clusters,
        hidden=args.hidden,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device="cpu",
        head_kwargs={"lstm": {"hidden": 64}, "gru": {"hidden": 64}, "transformer": {"ffn": 128}},
    )
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    start = time.perf_counter()
    rows = evaluate_heads(data, heads, settings, progress=sys.stderr.isatty())
    table = [
        {
            "head": r["head"],
            "top1": r["top1"],
            "parameters": r["parameters"],
            "train_time_s": r["train_time_s"],
        }
        for r in rows
    ]
    lengths = [len(x) for x in train_x + test_x]
    print(
        f"cluster-set task: {classes} classes, each owns {len(subsets[0])} of 12 base directions (+/- pairs), "
        f"dim {data.dim}, {len(train_x)} train / {len(test_x)} test videos of {min(lengths)}-{max(lengths)} frames; "
        f"every video's mean frame is the same mu. {args.epochs} epochs, Adam lr {args.lr}, "
        f"{args.clusters} clusters, FC {args.hidden}, gating on. Chance = {1 / classes:.3f}."
    )
    print()
    print(markdown_table(table))
    print()
    accuracy = {r["head"]: round(r["top1"], 4) for r in rows}
    learnable = [h for h in ("netvlad", "netrvlad", "netfv", "netbow", "attention_clusters") if h in accuracy]
    summary = {
        "task": "pooling_cluster_set",
        "chance": round(1 / classes, 4),
        "accuracy": accuracy,
        "learnable_beat_avg": all(accuracy[h] > accuracy["avg"] for h in learnable)
        if "avg" in accuracy
        else None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
