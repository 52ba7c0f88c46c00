"""``ssl-video demo``: the embedded default job on synthetic data, no download needed."""

from __future__ import annotations

from pathlib import Path

from ssl_video.cli import add_command

EXAMPLE = """examples:
  ssl-video demo --out demo_out
  ssl-video demo --out demo_seed1 --seed 1
  ssl-video demo --out demo_quick trainer.max_steps=200      (recipe overrides, here a shorter pretraining)

Writes the synthetic data (demo_out/data/{pretrain,eval}), the pretraining run (demo_out/run: config,
metrics, TensorBoard, checkpoint), the exported video encoder (demo_out/encoder), the two linear-probe
reports (demo_out/probe_pretrained, demo_out/probe_random_init), and demo_out/report.json, report.md,
loss_curves.png and accuracy.png. Rerunning with the same --out resumes where it stopped."""


def register(subparsers) -> None:
    demo = add_command(subparsers, "demo",
                       "synthetic audio-visual data -> STiCA pretraining -> export -> linear probe vs random init",
                       run_demo, EXAMPLE)
    demo.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides of the tiny recipe")
    demo.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, the pretraining and the probe (default 0)")
    demo.add_argument("--recipe", default=None,
                      help="pretraining recipe (default: recipes/stica_tiny_synthetic.yaml of the repository)")
    demo.add_argument("--videos-per-class", type=int, default=30,
                      help="evaluation videos per class (default 30, 4 s each)")
    demo.add_argument("--pretrain-videos-per-class", type=int, default=250,
                      help="pretraining videos per class (default 250, 2 s each)")
    demo.add_argument("--workers", type=int, default=2, help="data-writing and probe loader processes (default 2)")


def run_demo(args) -> int:
    from ssl_video.threads import configure

    configure(workers=1)  # before torch starts: thread count and wait policy (the recipe's one loader worker)
    from ssl_video.demo import DemoSettings, demo_table
    from ssl_video.demo import run_demo as run

    settings = DemoSettings(out=Path(args.out), seed=args.seed, recipe=Path(args.recipe) if args.recipe else None,
                            overrides=list(args.overrides), eval_videos_per_class=args.videos_per_class,
                            pretrain_videos_per_class=args.pretrain_videos_per_class, workers=args.workers,
                            progress=True)
    report = run(settings)
    print("\nLinear probe on the synthetic evaluation set (top-1, 3 splits):\n")
    print(demo_table(report))
    print(f"\nreport: {settings.out / 'report.json'} (also report.md, loss_curves.png, accuracy.png); "
          f"total {report['seconds']:.0f} s")
    return 0
