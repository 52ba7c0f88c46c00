"""``ssl-video demo`` end to end on a tiny budget, its rerun, its table, and the shipped recipes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ssl_video.cli import main
from ssl_video.config import load_config
from ssl_video.demo import demo_table
from ssl_video.recipe import Recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
TINY = ["trainer.max_steps=4", "data.batch_size=8", "data.num_workers=0", "trainer.progress=false",
        "trainer.log_every=1", "stica.video_encoder_args.width=0.0625", "stica.audio_encoder_args.width=0.0625",
        "data.clip.frames=8", "data.clip.fps=8"]


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_rerun_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--videos-per-class", "8", "--pretrain-videos-per-class", "4",
            "--workers", "0", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "random init" in printed and "STiCA pretrained" in printed

    report = json.loads((out / "report.json").read_text())
    for key in ("pretrained", "random_init"):
        entry = report[key]
        assert 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
        assert set(entry["splits"]) == {"1", "2", "3"}
        assert entry["videos_evaluated"] == 64
        mean = sum(split["top1"] for split in entry["splits"].values()) / 3
        assert entry["top1"] == pytest.approx(mean)
    assert report["gap_top1"] == pytest.approx(report["pretrained"]["top1"] - report["random_init"]["top1"])
    assert report["pretrain_seconds"] > 0 and report["pretrain_steps"] == 4
    assert report["data"]["pretrain"]["videos"] == 32 and report["data"]["eval"]["videos"] == 64
    for name in ("report.md", "loss_curves.png", "accuracy.png", "encoder/config.json", "run/checkpoints/last.pt"):
        assert (out / name).is_file(), name
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the baseline is the exported architecture with random weights, probed with the same protocol
    pretrained = json.loads((out / "probe_pretrained" / "report.json").read_text())
    random_init = json.loads((out / "probe_random_init" / "report.json").read_text())
    exported = json.loads((out / "encoder" / "config.json").read_text())
    assert random_init["encoder"]["init"] == "random"
    assert random_init["encoder"]["architecture"] == exported["architecture"]
    assert random_init["encoder"]["args"] == exported["args"]
    assert exported["args"]["width"] == 0.0625 and exported["args"]["frames"] == 8
    assert random_init["protocol"] == pretrained["protocol"]
    assert random_init["encoder_weights_sha256"] != pretrained["encoder_weights_sha256"]

    # a rerun trains nothing more and decodes nothing: every stage is reused
    metrics_before = (out / "run" / "metrics.jsonl").read_text()
    assert main(argv) == 0
    assert (out / "run" / "metrics.jsonl").read_text() == metrics_before
    for probe in ("probe_pretrained", "probe_random_init"):
        assert json.loads((out / probe / "report.json").read_text())["feature_cache_hit"] is True
    again = json.loads((out / "report.json").read_text())
    assert again["pretrained"]["top1"] == report["pretrained"]["top1"]
    assert (again["pretrain_seconds"], again["pretrain_steps"]) == (report["pretrain_seconds"], 4)


def test_demo_table_lists_both_encoders_per_split():
    def entry(values):
        return {"top1": sum(values) / 3, "top1_std": 0.01, "top5": 0.9,
                "splits": {str(i + 1): {"top1": v, "top5": 0.9} for i, v in enumerate(values)}}

    report = {"pretrained": entry([0.9, 0.8, 0.7]), "random_init": entry([0.1, 0.2, 0.15]), "gap_top1": 0.65,
              "pretrain_seconds": 480.0, "pretrain_steps": 900}
    lines = demo_table(report).splitlines()
    assert lines[0].startswith("| encoder | split 1 | split 2 | split 3 | mean top-1")
    assert "| STiCA pretrained | 0.900 | 0.800 | 0.700 | 0.800 ± 0.010 |" in lines[2]
    assert lines[3].startswith("| random init | 0.100 | 0.200 | 0.150 | 0.150")
    assert "+65.0 points" in lines[-1] and "900 steps" in lines[-1]


def test_demo_reports_a_missing_recipe_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--recipe", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.yaml" in err and "\n" not in err


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_loads(path):
    recipe = load_config(Recipe, path)
    assert recipe.name == path.stem


def test_paper_recipe_has_the_published_stica_settings():
    recipe = load_config(Recipe, Path(__file__).resolve().parents[1] / "recipes" / "stica_r2p1d18_k400.yaml")
    s, clip, optim = recipe.stica, recipe.data.clip, recipe.optim
    assert (s.video_encoder, s.audio_encoder, recipe.seed) == ("r2plus1d_18", "audio_resnet9", 31)
    assert (clip.frames, clip.fps, clip.video.crop, clip.video.scale) == (30, 30, 112, (0.14, 1.0))
    assert (clip.audio.sample_rate, clip.audio.n_mels, clip.audio.n_fft) == (24000, 257, 1024)
    assert (s.cross_temperature, s.within_temperature, s.av_weight, s.crop_weight) == (0.1, 0.5, 0.5, 0.5)
    assert (s.crops.spatial_large, s.crops.spatial_small, s.crops.temporal_large, s.crops.temporal_small) == \
        (2, 4, 2, 1)
    assert (s.pooling.layers, s.pooling.heads, s.pooling.ffn, s.pooling.tokens) == (2, 4, 2048, "time")
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay, optim.schedule) == \
        ("sgd", 0.64, 0.9, 1e-5, "constant")
    assert optim.warmup == 10 and optim.lr * optim.warmup_start_factor == pytest.approx(0.01)
    # scripts/pretrain_stica.sh: EPOCHS=151, USE_FP_16='False'
    assert (recipe.data.batch_size, recipe.trainer.epochs, recipe.trainer.sync_batchnorm) == (8, 151, True)
    assert recipe.trainer.mixed_precision == "no"


def test_sixty_frame_recipe_is_the_thirty_frame_one_with_2s_of_audio():
    root = Path(__file__).resolve().parents[1] / "recipes"
    short, long = (load_config(Recipe, root / f"stica_r2p1d18_k400{s}.yaml") for s in ("", "_60f"))
    assert (long.data.clip.frames, long.data.clip.audio_seconds) == (60, 2.0)
    assert long.data.clip.audio.time_frames(2.0) == 199  # official: 100 * num_sec - 1
    assert dataclasses.replace(long.data.clip, frames=30, audio_seconds=1.0) == short.data.clip
    assert (long.stica, long.optim, long.trainer) == (short.stica, short.optim, short.trainer)


def test_demo_recipe_trains_the_whole_method_on_a_map_crops_can_use():
    # catches: the demo recipe turning Feature Crop, the within-modal or cross-modal term or transformer
    # pooling off; a last feature map on which large and small crops cover the same cells
    import torch

    from ssl_video.demo import default_recipe_path
    from ssl_video.methods.stica import STiCA
    from ssl_video.recipe.methods import window_cells

    recipe = load_config(Recipe, default_recipe_path(), [f"data.root={Path(__file__).resolve().parent}"])
    s = recipe.stica
    assert s.feature_crop and s.crop_weight > 0 and s.av_weight > 0 and s.pooling.layers >= 1
    assert s.crops.spatial_small > 0 and s.crops.temporal_small > 0
    method = STiCA.from_recipe(recipe).eval()
    clip = recipe.data.clip
    with torch.no_grad():
        t, h, w = method.video_features(torch.zeros(1, 3, clip.frames, clip.video.crop, clip.video.crop)).shape[2:]
    assert window_cells(s.crops.spatial_small_window, h) < window_cells(s.crops.spatial_large_window, h) < h + 1
    assert window_cells(s.crops.temporal_small_window, t) < window_cells(s.crops.temporal_large_window, t)
