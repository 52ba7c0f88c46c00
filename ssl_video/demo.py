"""The demo job: synthetic audio-visual data, STiCA pretraining, export, and a linear probe against random init.

Two synthetic datasets are written (UCF101 layout, ``ssl_video.data.synth``): an unlabelled-by-use
pretraining set and a smaller evaluation set drawn with another seed, so the probe measures transfer to
videos the encoder never saw. The tiny recipe (``recipes/stica_tiny_synthetic.yaml``) trains both encoders
with the shared training loop; the video encoder is exported and probed on the 3 synthetic splits, and
the same architecture with random weights is probed the same way as the baseline.

Every stage reuses what an earlier run left in ``out`` (the synthetic data, the run directory's
checkpoint, the feature cache), so rerunning the demo after an interruption only does what is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ssl_video.engine.run_dir import RunDir
from ssl_video.errors import UserError

__all__ = ["DemoSettings", "default_recipe_path", "run_demo", "demo_table"]

RECIPE_NAME = "stica_tiny_synthetic.yaml"


def default_recipe_path() -> Path:
    """The tiny synthetic recipe shipped in the repository's ``recipes/``."""
    path = Path(__file__).resolve().parents[1] / "recipes" / RECIPE_NAME
    if not path.is_file():
        raise UserError(f"the demo recipe {path} is missing (run from a checkout of the repository, "
                        "or pass --recipe)")
    return path


@dataclass
class DemoSettings:
    out: Path
    seed: int = 0
    pretrain_videos_per_class: int = 250  # pretraining set: 8 classes x this, 2 s each (many distinct
    pretrain_seconds_per_video: float = 2.0  # videos: a small pool invites memorising each video's sound)
    eval_videos_per_class: int = 30  # evaluation set (3 group-wise splits), 4 s each
    probe_clips: int = 4  # uniformly spaced 1 s clips per 4 s evaluation video
    amplitude_px: tuple[float, float] = (7.0, 10.0)  # motion amplitude of the synthetic object (both sets)
    recipe: Path | None = None  # None: default_recipe_path()
    overrides: list[str] = field(default_factory=list)  # dotted recipe overrides
    workers: int = 2
    progress: bool = True
    data_dir: Path | None = None  # None: out/data (the ablation benchmark shares one per seed)
    cache_dir: Path | None = None  # feature cache; None: out/feature_cache


def _synthesise(directory: Path, videos_per_class: int, seconds: float, seed: int, settings: DemoSettings) -> dict:
    """Write the synthetic dataset unless an identical one is already there."""
    from ssl_video.data.synth import generate_synthetic_dataset

    summary_file = directory / "synth.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        parameters = summary.get("parameters", {})
        made = (parameters.get("videos_per_class"), summary.get("seconds"), summary.get("seed"),
                parameters.get("nuisance", {}).get("amplitude_px"))
        if made == (videos_per_class, seconds, seed, list(settings.amplitude_px)):
            return summary
    return generate_synthetic_dataset(directory, videos_per_class=videos_per_class, seconds=seconds, seed=seed,
                                      workers=settings.workers, progress=settings.progress,
                                      amplitude_px=settings.amplitude_px)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pretrain(recipe, recipe_path: Path, run: RunDir) -> dict:
    """Train (or resume) in ``run``; a rerun of a finished run keeps the first run's summary and time."""
    from ssl_video.engine.trainer import train

    before = json.loads(run.summary.read_text()) if run.summary.is_file() else None
    summary = train(recipe, run.root, recipe_path=recipe_path)
    if summary["status"] != "completed":
        raise UserError(f"pretraining stopped ({summary['status']}); rerun the demo with the same --out to resume")
    if before and before.get("status") == "completed" and before.get("step") == summary["step"]:
        return before  # nothing was trained this time
    return summary


def _probe(encoder: str, encoder_args: dict, eval_dir: Path, out: Path, settings: DemoSettings) -> dict:
    from ssl_video.evaluation.runner import EvalInputs, run_linear_probe

    inputs = EvalInputs(encoder=encoder, encoder_args=encoder_args, dataset="synthetic", root=str(eval_dir),
                        clips=settings.probe_clips, seed=settings.seed, workers=settings.workers,
                        cache_dir=str(settings.cache_dir or Path(settings.out) / "feature_cache"),
                        out=str(out), progress=settings.progress)
    return run_linear_probe(inputs)


def _summary(report: dict, out: Path) -> dict:
    return {
        "top1": report["mean"]["top1"],
        "top1_std": report["std"]["top1"],
        "top5": report["mean"]["top5"],
        "splits": {split: {"top1": v["top1"], "top5": v["top5"]} for split, v in report["splits"].items()},
        "videos_evaluated": report["videos_evaluated"],
        "report": str(out / "report.json"),
    }


def run_demo(settings: DemoSettings) -> dict:
    """Run every stage; returns (and writes to ``out/report.json``) the demo report."""
    from ssl_video.config import load_config
    from ssl_video.evaluation.plots import accuracy_comparison, loss_curves
    from ssl_video.export import export_encoder
    from ssl_video.models.io import read_encoder_config
    from ssl_video.recipe import Recipe

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    recipe_path = Path(settings.recipe) if settings.recipe else default_recipe_path()
    data_dir = Path(settings.data_dir) if settings.data_dir else out / "data"
    pretrain_dir, eval_dir = data_dir / "pretrain", data_dir / "eval"
    if not recipe_path.is_file():
        raise UserError(f"no such recipe: {recipe_path}")
    load_config(Recipe, recipe_path, [f"data.root={out}", *settings.overrides])  # bad overrides fail before any work

    print(f"[1/4] synthetic audio-visual data: pretraining set {pretrain_dir}, evaluation set {eval_dir}", flush=True)
    pretrain_data = _synthesise(pretrain_dir, settings.pretrain_videos_per_class, settings.pretrain_seconds_per_video,
                                seed=1000 + settings.seed, settings=settings)
    eval_data = _synthesise(eval_dir, settings.eval_videos_per_class, 4.0, seed=settings.seed, settings=settings)
    data_seconds = time.time() - started

    overrides = [f"data.root={pretrain_dir}", f"seed={settings.seed}", *settings.overrides]
    recipe = load_config(Recipe, recipe_path, overrides)
    run = RunDir(out / "run")
    print(f"[2/4] STiCA pretraining ({recipe_path.name}) in {run.root}", flush=True)
    stage_started = time.time()
    summary = _pretrain(recipe, recipe_path, run)
    stages = {"data": data_seconds, "pretrain": time.time() - stage_started}

    stage_started = time.time()
    encoder_dir = out / "encoder"
    print(f"[3/4] exporting the video encoder to {encoder_dir}", flush=True)
    export_encoder(run.root, encoder_dir, encoder="video")
    _, exported = read_encoder_config(encoder_dir)
    stages["export"] = time.time() - stage_started

    print("[4/4] linear probe on the 3 splits of the evaluation set: pretrained, then random init", flush=True)
    stage_started = time.time()
    pretrained = _probe(str(encoder_dir), {}, eval_dir, out / "probe_pretrained", settings)
    stages["probe_pretrained"] = time.time() - stage_started
    stage_started = time.time()
    random_init = _probe(exported["architecture"], dict(exported["args"]), eval_dir, out / "probe_random_init",
                         settings)
    stages["probe_random_init"] = time.time() - stage_started

    metrics = _read_jsonl(run.metrics)
    plots = {
        "loss": str(loss_curves(out / "loss_curves.png", metrics,
                                [k for k in ("loss", "loss_av", "loss_crop") if any(row.get(k) for row in metrics)],
                                "STiCA pretraining losses")),
        "accuracy": str(accuracy_comparison(out / "accuracy.png",
                                            {"pretrained": pretrained["splits"], "random init": random_init["splits"]},
                                            "top1", "Linear probe top-1 on the synthetic splits")),
    }
    report = {
        "pretrained": _summary(pretrained, out / "probe_pretrained"),
        "random_init": _summary(random_init, out / "probe_random_init"),
        "gap_top1": pretrained["mean"]["top1"] - random_init["mean"]["top1"],
        "pretrain_seconds": summary.get("seconds"),
        "pretrain_steps": summary.get("step"),
        "final_losses": {k: metrics[-1][k] for k in ("loss", "loss_av", "loss_crop") if metrics and k in metrics[-1]},
        "method": _components(recipe),
        "recipe": str(recipe_path),
        "overrides": overrides,
        "encoder": {"architecture": exported["architecture"], "args": exported["args"], "params": exported["params"]},
        "data": {"pretrain": {"videos": pretrain_data.get("videos"), "dir": str(pretrain_dir)},
                 "eval": {"videos": eval_data.get("videos"), "dir": str(eval_dir)}},
        "data_seconds": data_seconds,
        "stage_seconds": stages,
        "seconds": time.time() - started,
        "plots": plots,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(demo_table(report) + "\n")
    return report


def _components(recipe) -> dict:
    """Which parts of STiCA the recipe trains (the report says what the numbers are of)."""
    cfg = recipe.stica
    crops = cfg.feature_crop and cfg.crop_weight > 0
    return {"cross_modal": cfg.av_weight > 0, "feature_crop": crops, "transformer_pooling_layers": cfg.pooling.layers,
            "within_modal": crops, "batch_size": recipe.data.batch_size}


def demo_table(report: dict) -> str:
    """Markdown table: linear-probe top-1 per split and mean, pretrained against random init."""
    splits = list(report["pretrained"]["splits"])
    lines = [
        "| encoder | " + " | ".join(f"split {s}" for s in splits) + " | mean top-1 | mean top-5 |",
        "|---" * (len(splits) + 3) + "|",
    ]
    for key, name in (("pretrained", "STiCA pretrained"), ("random_init", "random init")):
        row = report[key]
        cells = " | ".join(f"{row['splits'][s]['top1']:.3f}" for s in splits)
        lines.append(f"| {name} | {cells} | {row['top1']:.3f} ± {row['top1_std']:.3f} | {row['top5']:.3f} |")
    lines.append("")
    lines.append(f"gap: {100 * report['gap_top1']:+.1f} points of top-1; pretraining took "
                 f"{report['pretrain_seconds']:.0f} s for {report['pretrain_steps']} steps")
    method = report.get("method")
    if method:
        parts = ["cross-modal" if method["cross_modal"] else None,
                 "Feature Crop (within-modal crop pairs)" if method["feature_crop"] else None,
                 f"transformer pooling ({method['transformer_pooling_layers']} layers)"
                 if method["transformer_pooling_layers"] else "average pooling"]
        lines.append("trained: " + " + ".join(p for p in parts if p))
    return "\n".join(lines)
