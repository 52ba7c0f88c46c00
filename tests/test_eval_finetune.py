"""``eval finetune``: test-time view averaging against a by-hand reference, the protocol end to end on
synthetic data, resume of an interrupted split, reuse of finished ones, and a corrupt video."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ssl_video.cli import main
from ssl_video.data.datasets.base import VideoRecord
from ssl_video.evaluation.finetune import (
    FinetuneSettings,
    ViewDataset,
    run_finetune,
    score_videos,
    spatial_crop_boxes,
)
from ssl_video.evaluation.runner import EvalInputs

ENCODER_ARGS = {"width": 0.0625}
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def tiny_inputs(root, out, **kw):
    return EvalInputs(encoder="r3d_18", encoder_args=dict(ENCODER_ARGS), dataset="synthetic", root=str(root),
                      clips=2, frames=4, fps=8.0, crop=32, resize=40, workers=0, batch_size=4, out=str(out),
                      progress=False, **kw)


TINY_RECIPE = ["trainer.epochs=2", "data.batch_size=4", "optim.warmup=1", "optim.milestones=[]", "optim.lr=0.01",
               "trainer.tensorboard=false", "trainer.log_every=1"]


def tiny_settings(*overrides, crops=3):
    return FinetuneSettings(overrides=[*TINY_RECIPE, *overrides], crops=crops)


@pytest.mark.parametrize("height,width,size,count,expected", [
    (40, 53, 32, 1, [(4, 10, 32, 32)]),
    (40, 53, 32, 3, [(4, 0, 32, 32), (4, 10, 32, 32), (4, 21, 32, 32)]),  # along the width
    (53, 40, 32, 3, [(0, 4, 32, 32), (10, 4, 32, 32), (21, 4, 32, 32)]),  # along the height
    (128, 171, 128, 3, [(0, 0, 128, 128), (0, 22, 128, 128), (0, 43, 128, 128)]),  # the standard 3-crop
    (20, 30, 32, 2, [(0, 0, 20, 20), (0, 10, 20, 20)]),  # frame smaller than the crop: largest square
])
def test_spatial_crop_boxes(height, width, size, count, expected):
    assert spatial_crop_boxes(height, width, size, count) == expected


@pytest.mark.parametrize("average", ["softmax", "logits"])
def test_view_average_equals_a_by_hand_average(index_video, average):
    from ssl_video.data.media import read_clips
    from ssl_video.data.transforms import normalize
    from ssl_video.methods.finetune import Finetune
    from ssl_video.models.registry import create_encoder

    torch.manual_seed(0)
    model = Finetune(create_encoder("r3d_18", width=0.0625, frames=4, crop_size=32), num_classes=5).eval()
    # a 64 x 48 (portrait) video of 3 s: decoded at short side 40 it is 53 x 40, so crops move down the height
    dataset = ViewDataset([VideoRecord(str(index_video), 2, "v")], frames=4, fps=8.0, resize=40, crop=32,
                          clips=3, crops=3, mean=MEAN, std=STD)
    scores, rows, skipped = score_videos(model, dataset, device=torch.device("cpu"), batch_size=1, workers=0,
                                         average=average, chunk=4)
    assert scores.shape == (1, 5) and rows.tolist() == [0] and skipped == {}

    span = 4 / 8.0
    clips = read_clips(str(index_video), [0.0, (3.0 - span) / 2, 3.0 - span], 4, 8.0, size=40, audio_rate=None)
    views = []
    with torch.no_grad():
        for clip in clips:
            assert tuple(clip.video.shape[-2:]) == (53, 40)
            for top in (0, 10, 21):
                view = normalize(clip.video[..., top:top + 32, 4:36], MEAN, STD)
                views.append(model.logits(view.unsqueeze(0))[0])
    logits = torch.stack(views)
    expected = logits.softmax(-1).mean(0) if average == "softmax" else logits.mean(0)
    np.testing.assert_allclose(scores[0], expected.numpy(), rtol=1e-4, atol=1e-6)
    assert len({tuple(v.tolist()) for v in logits}) == 9  # nine distinct views


def test_end_to_end_reports_and_finished_splits_are_reused(synth, tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "fragment.yaml"
    recipe.write_text("data: {batch_size: 4}\noptim: {warmup: 1, milestones: [1]}\ntrainer: {tensorboard: false}\n")
    out = tmp_path / "out"
    args = ["eval", "finetune", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset", "synthetic",
            "--root", str(synth), "--clips", "2", "--frames", "4", "--fps", "8", "--crop", "32", "--resize", "40",
            "--workers", "0", "--batch-size", "4", "--out", str(out), "--recipe", str(recipe),
            "trainer.epochs=2", "optim.lr=0.01", "trainer.progress=false"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("protocol", "encoder", "splits", "mean", "std", "videos_listed", "videos_evaluated", "skipped",
                "skipped_reasons", "encoder_weights_sha256"):
        assert key in report
    assert sorted(report["splits"]) == ["1", "2", "3"]
    assert report["videos_listed"] == report["videos_evaluated"] == 18 and report["skipped"] == []
    for split, values in report["splits"].items():
        assert 0.0 <= values["top1"] <= values["top5"] <= 1.0
        assert values["train_videos"] + values["test_videos"] == 18
        assert values["train_steps"] == 2 * (values["train_videos"] // 4)  # 2 passes of one clip per video
        predictions = np.load(out / f"split_{split}" / "predictions.npz")
        assert predictions["scores"].shape == (values["test_videos"], 3)
        np.testing.assert_allclose(predictions["scores"].sum(1), 1.0, rtol=1e-5)  # mean of softmaxes
    assert report["mean"]["top1"] == pytest.approx(np.mean([v["top1"] for v in report["splits"].values()]))
    protocol = report["protocol"]
    assert protocol["test"]["clips"] == 2 and protocol["test"]["crops"] == 3
    assert protocol["training"]["overrides"] == ["trainer.epochs=2", "optim.lr=0.01", "trainer.progress=false"]
    assert protocol["training"]["epochs"] == 2 and protocol["training"]["recipe"] == str(recipe)
    assert protocol["recipe"]["optim"]["milestones"] == [1.0] and protocol["recipe"]["method"] == "finetune"
    assert protocol["recipe"]["optim"]["lr"] == 0.01 and protocol["recipe"]["optim"]["weight_decay"] == 0.005
    config = (out / "split_1" / "config.yaml").read_text()  # the override reached the trained recipe
    assert "lr: 0.01" in config and "batch_size: 4" in config and "weight_decay: 0.005" in config
    assert report["encoder"]["init"] == "random"
    for name in ("report.md", "splits.png", "confused_pairs.png"):
        assert (out / name).is_file()
    assert "finetune on synthetic: 18 of 18 videos evaluated" in capsys.readouterr().out

    # the same command again trains and decodes nothing: every split is finished
    import ssl_video.engine.trainer as trainer
    import ssl_video.evaluation.finetune as finetune

    def forbidden(*a, **k):
        raise AssertionError("a finished split was trained or tested again")

    monkeypatch.setattr(trainer, "train", forbidden)
    monkeypatch.setattr(finetune, "score_videos", forbidden)
    assert main(args) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["splits"].keys() == report["splits"].keys()
    for split in report["splits"]:
        assert again["splits"][split]["top1"] == report["splits"][split]["top1"]
        assert again["splits"][split]["reused"] and not report["splits"][split]["reused"]


def test_interrupted_split_resumes_to_the_uninterrupted_result(synth, tmp_path):
    whole = run_finetune(tiny_inputs(synth, tmp_path / "whole", splits=["2"]), tiny_settings())
    assert whole["status"] == "completed"

    out = tmp_path / "cut"
    stopped = run_finetune(tiny_inputs(synth, out, splits=["2"]), tiny_settings("trainer.stop_at_step=1"))
    assert stopped["status"] == "stopped_at_step" and stopped["step"] == 1 and stopped["total_steps"] == 6
    assert not (out / "report.json").exists() and not (out / "split_2" / "test.json").exists()
    resumed = run_finetune(tiny_inputs(synth, out, splits=["2"]), tiny_settings())
    summary = json.loads((out / "split_2" / "summary.json").read_text())
    assert summary["resumed_from"] == 1 and summary["step"] == 6
    np.testing.assert_array_equal(np.load(out / "split_2" / "predictions.npz")["scores"],
                                  np.load(tmp_path / "whole" / "split_2" / "predictions.npz")["scores"])
    assert resumed["splits"]["2"]["top1"] == whole["splits"]["2"]["top1"]


def test_corrupt_video_is_counted_and_named(synth, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth, root)
    victim = sorted((root / "UCF-101").rglob("*.mp4"))[4]
    victim.write_bytes(b"\x00" * 100)
    report = run_finetune(tiny_inputs(root, tmp_path / "out", splits=["1", "3"]), tiny_settings(crops=1))
    assert report["videos_evaluated"] == report["videos_listed"] - 1 == 17
    assert report["skipped"] == [str(victim)] and str(victim) in report["skipped_reasons"]
    from ssl_video.data.datasets import load_layout

    layout = load_layout("synthetic", root=str(root))
    for split, values in report["splits"].items():
        tests = [r.path for r in layout.splits[split]["test"]]
        assert values["test_videos"] == len(tests) - (str(victim) in tests)
        assert values["train_videos"] == len(layout.splits[split]["train"])


def test_bad_settings_are_user_errors(synth, tmp_path, capsys):
    base = ["eval", "finetune", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset", "synthetic",
            "--root", str(synth),
            "--out", str(tmp_path / "o")]
    for extra in (["trainer.epochs=zero"], ["--crops", "0"], ["optim.milestones=[6,x]"], ["optim.lr=abc"],
                  ["trainer.nonsense=1"], ["data.split=2"], ["--recipe", str(tmp_path / "missing.yaml")]):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("ssl-video: error:") and err.count("\n") == 1, err


def test_defaults_are_the_published_protocol_and_per_split_fields_are_set(synth, tmp_path):
    from types import SimpleNamespace

    from ssl_video.evaluation.finetune import split_recipe
    from ssl_video.features.protocol import ClipProtocol

    inputs = tiny_inputs(synth, tmp_path)
    protocol = ClipProtocol(clips=10, frames=32, fps=30.0, resize=128, crop=128)
    encoder = SimpleNamespace(provenance={"init": "random", "architecture": "r3d_18"})
    recipe = split_recipe(inputs, FinetuneSettings(overrides=["optim.lr=0.01"]), "2", protocol, encoder, 3)
    optim, trainer, ft = recipe.optim, recipe.trainer, recipe.finetune
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay) == ("sgd", 0.01, 0.9, 0.005)
    assert (optim.schedule, optim.warmup, optim.milestones, optim.gamma) == ("step", 20, [60, 100], 0.05)
    assert (trainer.epochs, recipe.data.batch_size, recipe.data.clip.video.color_jitter) == (120, 32, 0.8)
    assert (ft.dropout, ft.backbone_lr_scale, ft.encoder, ft.encoder_args, ft.num_classes) == \
        (0.5, 0.1, "r3d_18", ENCODER_ARGS, 3)
    assert (recipe.data.split, recipe.data.dataset, recipe.data.clip.frames, recipe.data.clip.video.crop) == \
        ("2", "synthetic", 32, 128)
    assert recipe.method == "finetune" and recipe.name == "finetune_synthetic_split2"
