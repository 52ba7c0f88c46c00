"""What each part of STiCA adds on the demo's data: four variants, same data, same budget, several seeds.

Variants (overrides of the demo recipe, recipes/stica_tiny_synthetic.yaml):
  cross_modal   audio-visual term only, average pooling       stica.feature_crop=false stica.pooling.layers=0
  feature_crop  + Feature Crop (within-modal crop pairs)      stica.feature_crop=true  stica.pooling.layers=0
  transformer   + transformer pooling over time tokens        stica.feature_crop=false stica.pooling.layers=L
  full          the whole method (both)                       stica.feature_crop=true  stica.pooling.layers=L
(L: the recipe's own pooling.layers, 2 when it has none.) Each (seed, variant) runs the demo pipeline
(``ssl_video.demo.run_demo``): the seed's synthetic pretraining and evaluation sets (written once per seed
and shared by its variants), pretraining for ``--steps``, export, and the same linear probe of the pretrained
encoder and of the same architecture at random init (its features cached once per seed). The gap is
pretrained top-1 minus random-init top-1, mean over the 3 splits, as a fraction of 1.

Prints a table (per seed and mean) and, last, one JSON line:
  {"mean_gap": {variant: ...}, "mean_top1": {...}, "random_init_top1": {seed: ...}, "per_seed": {...},
   "seeds": [...], "steps": N, "seconds": {...}}
A full run (3 seeds x 4 variants at the recipe's steps) takes about 12 demo pretrainings; use --seeds,
--variants and --steps to run part of it, and --out to keep (and resume) the runs.

  python benchmarks/stica_ablation.py [--seeds 0 1 2] [--steps N] [--variants full cross_modal] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_video.threads import configure  # noqa: E402  (before torch starts)

VARIANTS = ("cross_modal", "feature_crop", "transformer", "full")


def variant_overrides(name: str, layers: int) -> list[str]:
    crop = name in ("feature_crop", "full")
    pool = layers if name in ("transformer", "full") else 0
    return [f"stica.feature_crop={str(crop).lower()}", f"stica.pooling.layers={pool}"]


def table(results: dict, seeds: list[int], variants: list[str]) -> str:
    lines = ["| variant | " + " | ".join(f"seed {s} top-1 (gap)" for s in seeds) + " | mean top-1 | mean gap |",
             "|---" * (len(seeds) + 3) + "|"]
    for name in variants:
        cells = []
        for seed in seeds:
            row = results[name].get(seed)
            cells.append(f"{row['top1']:.3f} ({100 * row['gap']:+.1f})" if row else "-")
        done = [results[name][s] for s in seeds if s in results[name]]
        mean_top1 = sum(r["top1"] for r in done) / len(done) if done else float("nan")
        mean_gap = sum(r["gap"] for r in done) / len(done) if done else float("nan")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean_top1:.3f} | {100 * mean_gap:+.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the recipe's)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", default=None, help="keep the runs here (a rerun resumes); default: a temporary folder")
    parser.add_argument("--pretrain-videos-per-class", type=int, default=None)
    parser.add_argument("--eval-videos-per-class", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="further recipe overrides for every variant (key=value)")
    args = parser.parse_args()
    configure(workers=1)

    from ssl_video.config import load_config
    from ssl_video.demo import DemoSettings, default_recipe_path, run_demo
    from ssl_video.recipe import Recipe

    recipe = load_config(Recipe, default_recipe_path(), [f"data.root={ROOT}", *args.overrides])
    layers = recipe.stica.pooling.layers or 2
    steps = args.steps or recipe.trainer.max_steps
    sizes = {}
    if args.pretrain_videos_per_class:
        sizes["pretrain_videos_per_class"] = args.pretrain_videos_per_class
    if args.eval_videos_per_class:
        sizes["eval_videos_per_class"] = args.eval_videos_per_class

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        results: dict[str, dict[int, dict]] = {name: {} for name in args.variants}
        random_init: dict[int, float] = {}
        seconds: dict[str, float] = {}
        for seed in args.seeds:
            for name in args.variants:
                started = time.time()
                settings = DemoSettings(out=root / f"seed{seed}" / name, seed=seed, workers=args.workers,
                                        progress=False, data_dir=root / f"seed{seed}" / "data",
                                        cache_dir=root / f"seed{seed}" / "feature_cache",
                                        overrides=[*variant_overrides(name, layers), f"trainer.max_steps={steps}",
                                                   *args.overrides], **sizes)
                report = run_demo(settings)
                results[name][seed] = {"top1": report["pretrained"]["top1"], "gap": report["gap_top1"],
                                       "pretrain_seconds": report["pretrain_seconds"],
                                       "final_losses": report["final_losses"]}
                random_init[seed] = report["random_init"]["top1"]
                seconds[f"seed{seed}/{name}"] = round(time.time() - started, 1)
                print(f"seed {seed} {name}: top-1 {report['pretrained']['top1']:.3f}, random init "
                      f"{random_init[seed]:.3f}, gap {100 * report['gap_top1']:+.1f} points "
                      f"({seconds[f'seed{seed}/{name}']:.0f} s)", file=sys.stderr, flush=True)

    print(table(results, args.seeds, args.variants))

    def mean(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name].values()]
        return round(sum(values) / len(values), 4) if values else None

    print(json.dumps({
        "mean_gap": {name: mean(name, "gap") for name in args.variants},
        "mean_top1": {name: mean(name, "top1") for name in args.variants},
        "random_init_top1": {str(seed): round(v, 4) for seed, v in random_init.items()},
        "per_seed": {name: {str(seed): {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                            for seed, row in rows.items()} for name, rows in results.items()},
        "seeds": args.seeds,
        "steps": steps,
        "seconds": seconds,
    }))


if __name__ == "__main__":
    main()
