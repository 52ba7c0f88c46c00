"""The step benchmarks run end to end on tiny settings and print their JSON summary line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def last_json(script: str, *args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_feature_crop_benchmark_reports_time_and_memory_ratios():
    result = last_json("feature_crop.py", "--width", "0.0625", "--frames", "4", "--size", "56", "--batch", "2",
                       "--rounds", "1", "--device", "cpu")
    for key in ("ratio_8_vs_1_feature_crops", "ratio_feature_vs_input_8_crops",
                "memory_ratio_8_vs_1_feature_crops", "memory_ratio_feature_vs_input_8_crops"):
        assert result[key] > 0, key
    assert set(result["step_seconds"]) == {f"{v}_{k}" for v in ("feature", "input") for k in (1, 2, 4, 8)}
    assert all(value > 0 for value in result["peak_mb"].values())


@pytest.mark.slow
def test_train_throughput_benchmark_compares_variants_with_fp32():
    result = last_json("train_throughput.py", "--width", "0.0625", "--frames", "4", "--size", "32", "--batch", "2",
                       "--variants", "fp32,channels_last", "--rounds", "1", "--steps", "1", "--warmup", "1",
                       "--device", "cpu")
    assert set(result["clips_per_s"]) == {"fp32", "channels_last"}
    assert result["ratio_vs_fp32"]["fp32"] == 1.0
    assert all(value > 0 for value in result["clips_per_s"].values())


@pytest.mark.slow
def test_contention_benchmark_reports_both_settings_alone_and_beside_busy():
    # catches: a setting or condition missing from the report, the slowdown computed from the wrong pair
    result = last_json("contention.py", "--steps", "1", "--rounds", "1", "--batch", "2")
    rates = result["steps_per_s"]
    assert set(rates) == {"shipped", "default"}
    assert all(set(v) == {"alone", "beside_busy"} and min(v.values()) > 0 for v in rates.values())
    assert result["slowdown_beside_busy"] == round(rates["shipped"]["alone"] / rates["shipped"]["beside_busy"], 3)


@pytest.mark.slow
def test_stica_ablation_benchmark_reports_gaps_per_variant():
    # catches: a variant's overrides not reaching the run (equal component flags), the gap not pretrained
    # minus random init, a variant missing from the JSON line
    tiny = ["trainer.progress=false", "data.num_workers=0", "data.batch_size=8",
            "stica.video_encoder_args.width=0.0625", "stica.audio_encoder_args.width=0.0625",
            "data.clip.frames=8", "data.clip.fps=8"]
    result = last_json("stica_ablation.py", "--seeds", "0", "--steps", "2", "--variants", "cross_modal", "full",
                       "--pretrain-videos-per-class", "4", "--eval-videos-per-class", "8", "--workers", "0", *tiny)
    assert set(result["mean_gap"]) == {"cross_modal", "full"} and result["steps"] == 2
    for name in ("cross_modal", "full"):
        row = result["per_seed"][name]["0"]
        assert row["gap"] == pytest.approx(row["top1"] - result["random_init_top1"]["0"], abs=1e-3)
    assert result["per_seed"]["cross_modal"]["0"]["final_losses"]["loss_crop"] == 0.0
    assert result["per_seed"]["full"]["0"]["final_losses"]["loss_crop"] > 0.0
