"""Linear probe and retrieval: the math against references, and the protocols end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssl_video.evaluation.linear import ProbeSettings, fit_logistic_regression, holdout_split, probe_split
from ssl_video.evaluation.metrics import recall_at_k
from ssl_video.evaluation.retrieval import retrieval_recall
from ssl_video.evaluation.runner import EvalInputs, run_linear_probe, run_retrieval


def blobs(n_per_class: int, classes: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def test_logistic_regression_reaches_the_optimum():
    x, y = blobs(30, 4, 8, 1.5, 0)
    l2 = 1e-2
    w, b = fit_logistic_regression(x, y, 4, l2)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(torch.tensor(x, dtype=torch.float64) @ wt + bt, torch.tensor(y)) \
        + l2 * wt.pow(2).sum()
    loss.backward()
    assert wt.grad.abs().max() < 1e-5 and bt.grad.abs().max() < 1e-5  # stationary point of a convex problem


def test_probe_separable_features_above_95_percent():
    x, y = blobs(40, 6, 32, 0.3, 1)
    ids = [f"v_C{c}_g{(i % 8) + 1:02d}_c01" for i, c in enumerate(y)]
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:160], order[160:]
    result = probe_split(x[train], y[train], [ids[i] for i in train], x[test], y[test], 6, ProbeSettings())
    assert result["top1"] > 0.95 and result["top5"] == 1.0
    assert result["confusion"].sum() == len(test)


def test_holdout_keeps_groups_together():
    ids = [f"v_A_g{g:02d}_c{c:02d}" for g in range(1, 7) for c in range(1, 4)]
    labels = np.zeros(len(ids), dtype=np.int64)
    held = holdout_split(ids, labels, 0.25, seed=0)
    groups_held = {i.split("_")[2] for i, h in zip(ids, held) if h}
    groups_kept = {i.split("_")[2] for i, h in zip(ids, held) if not h}
    assert groups_held and groups_kept and not groups_held & groups_kept


def test_faiss_recall_equals_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        q, g = rng.normal(size=(37, 16)), rng.normal(size=(91, 16))
        ql, gl = rng.integers(0, 5, 37), rng.integers(0, 5, 91)
        ours = retrieval_recall(q, ql, g, gl, (1, 5, 10, 20))
        ref = recall_at_k(q, ql, g, gl, (1, 5, 10, 20))
        # a plain loop as the slowest reference
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
        for k in (1, 5, 10, 20):
            hits = [any(gl[j] == ql[i] for j in np.argsort(-sims[i])[:k]) for i in range(len(q))]
            assert ours[f"recall@{k}"] == pytest.approx(np.mean(hits)) == pytest.approx(ref[k])


def _inputs(synth, tmp_path, **kw):
    return EvalInputs(encoder="r3d_18", encoder_args={"width": 0.0625}, dataset="synthetic", root=str(synth),
                      clips=2, frames=4, fps=8.0, crop=32, resize=32, workers=0, batch_size=4,
                      cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "out"), progress=False, **kw)


def test_linear_probe_end_to_end_and_cache_hit(synth, tmp_path, monkeypatch):
    report = run_linear_probe(_inputs(synth, tmp_path))
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    for key in ("protocol", "encoder", "splits", "mean", "videos_listed", "videos_evaluated", "skipped"):
        assert key in saved
    assert sorted(saved["splits"]) == ["1", "2", "3"] and saved["videos_listed"] == 18
    assert saved["videos_evaluated"] == 18 and saved["skipped"] == []
    for values in saved["splits"].values():
        assert 0.0 <= values["top1"] <= values["top5"] <= 1.0
    assert saved["mean"]["top1"] == pytest.approx(np.mean([v["top1"] for v in saved["splits"].values()]))
    assert saved["encoder"]["init"] == "random" and saved["protocol"]["clip"]["clips"] == 2
    for name in ("report.md", "splits.png", "confused_pairs.png"):
        assert (tmp_path / "out" / name).is_file()
    assert not report["feature_cache_hit"]

    # a second run decodes nothing: every video comes from the cache
    import ssl_video.data.clip_dataset as clip_dataset

    def no_decoding(*args, **kwargs):
        raise AssertionError("a video was decoded despite the cache")

    monkeypatch.setattr(clip_dataset, "read_clips", no_decoding)
    again = run_linear_probe(_inputs(synth, tmp_path))
    assert again["feature_cache_hit"] and again["splits"] == report["splits"]
    retrieval = run_retrieval(_inputs(synth, tmp_path, splits=["2"]))
    assert retrieval["feature_cache_hit"] and retrieval["videos_listed"] == 18
    assert set(retrieval["splits"]) == {"2"} and "recall@1" in retrieval["mean"]


def test_corrupt_video_is_skipped_counted_and_named(synth, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth, root)
    victim = sorted((root / "UCF-101").rglob("*.mp4"))[4]
    victim.write_bytes(b"\x00" * 100)
    inputs = _inputs(root, tmp_path)
    report = run_retrieval(inputs)
    assert report["videos_evaluated"] == report["videos_listed"] - 1
    assert report["skipped"] == [str(victim)] and str(victim) in report["skipped_reasons"]
    total = sum(v["queries"] + v["gallery"] for v in report["splits"].values())
    assert total == 3 * 18 - 3  # the bad video is missing from each split once


def test_zoo_name_typo_and_audio_encoder_are_user_errors(synth, tmp_path):
    from ssl_video.errors import UserError

    with pytest.raises(UserError):
        run_linear_probe(EvalInputs(encoder="r2plus1d_81", dataset="synthetic", root=str(synth), out=str(tmp_path)))
    with pytest.raises(UserError, match="--encoder: 'audio_resnet9' is an audio encoder; this needs a video encoder"):
        run_linear_probe(EvalInputs(encoder="audio_resnet9", dataset="synthetic", root=str(synth),
                                    out=str(tmp_path), encoder_args={"width": 0.0625}))


def test_registry_lists_every_protocol_with_settings_and_groups():
    from ssl_video.evaluation.protocols import GROUPS, list_protocols, load_settings

    protocols = {p.name: p for p in list_protocols()}
    assert set(protocols) == {"linear-probe", "retrieval", "finetune", "pooling", "temporal"}
    for protocol in protocols.values():
        assert protocol.description and set(protocol.groups) <= set(GROUPS) and protocol.examples
        load_settings(protocol, {})  # every setting has a default


def test_cli_commands_come_from_the_registry(capsys):
    from ssl_video.cli import main
    from ssl_video.evaluation.protocols import list_protocols

    for protocol in list_protocols():
        with pytest.raises(SystemExit):
            main(["eval", protocol.name, "--help"])
        text = capsys.readouterr().out
        assert f"ssl-video eval {protocol.name} " in text and "--slurm PROFILE" in text
        assert all(flag.option in text for flag in protocol.flags)


TINY_CLIP = "clips: 2, frames: 4, fps: 8, crop: 32, resize: 32"


def _tiny_untrimmed(root):
    from ssl_video.data.synth_untrimmed import generate_untrimmed_dataset

    generate_untrimmed_dataset(root, videos=4, classes=2, seconds=6.0, fps=16.0, size=(32, 32),
                               segment_seconds=(1.0, 2.0), gap_seconds=(0.75, 1.5), seed=2, progress=False)
    return root


def test_suite_runs_every_protocol_and_combines(synth, tmp_path, capsys):
    from ssl_video.cli import main

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: tiny\nprotocols:\n"
        f"  - {{protocol: linear-probe, dataset: synthetic, {TINY_CLIP}}}\n"
        f"  - {{protocol: retrieval, dataset: synthetic, splits: ['1'], {TINY_CLIP}, settings: {{ks: [1, 5]}}}}\n"
        f"  - {{protocol: finetune, dataset: synthetic, splits: ['3'], {TINY_CLIP}, settings: {{crops: 1,"
        " overrides: [trainer.epochs=1, data.batch_size=4, optim.warmup=0, 'optim.milestones=[]', optim.lr=0.01,"
        " trainer.tensorboard=false]}}\n"
        f"  - {{protocol: pooling, dataset: synthetic, splits: ['2'], {TINY_CLIP}, settings: {{heads: [avg],"
        " epochs: 1, hidden: 8}}\n"
        "  - {protocol: temporal, dataset: tsp, clips: 1, frames: 4, fps: 8, crop: 32, resize: 32}\n")
    out = tmp_path / "suite_out"
    code = main(["eval", "suite", str(suite), "--encoder", "r3d_18", "--encoder-args", "width=0.0625",
                 "--root", f"synthetic={synth}", "--root", f"tsp={_tiny_untrimmed(tmp_path / 'untrimmed')}",
                 "--workers", "0", "--cache-dir", str(tmp_path / "c"), "--out", str(out)])
    assert code == 0
    combined = json.loads((out / "report.json").read_text())
    assert len(combined["results"]) == 5 and len(combined["table"]) == 5 and combined["status"] == "completed"
    rows = {row["protocol"]: row for row in combined["table"]}
    assert rows["finetune"]["splits"] == "3" and 0 <= rows["finetune"]["top1"] <= 1
    assert 0 <= rows["pooling"]["avg top1"] <= 1 and 0 <= rows["temporal"]["fg_bg_top1"] <= 1
    assert all((out / name / "report.json").is_file() for name in combined["results"])
    results = list(combined["results"].values())
    assert results[1]["feature_cache_hit"] and results[3]["feature_cache_hit"]  # the probe's features reused
    config = (out / "03_finetune_synthetic" / "split_3" / "config.yaml").read_text()
    assert "lr: 0.01" in config and "split: '3'" in config


@pytest.mark.parametrize("entry,key", [
    ("{protocol: linear-probe, dataset: synthetic, clip: 2}", "protocols[1].clip"),
    ("{protocol: retrieval, dataset: synthetic, settings: {kz: [1]}}", "protocols[1].settings.kz"),
    ("{protocol: pooling, dataset: synthetic, settings: {epochs: two}}", "protocols[1].settings.epochs"),
    ("{protocol: finetune, dataset: synthetic, settings: {overrides: [optim.lrr=1]}}", "optim.lrr"),
    ("{protocol: linear-probe, dataset: synthetic, settings: {seed: 3}}", "protocols[1].settings.seed"),
    ("{protocol: linear-prob, dataset: synthetic}", "protocols[1].protocol"),
])
def test_suite_errors_name_the_key_before_anything_runs(synth, tmp_path, capsys, monkeypatch, entry, key):
    from ssl_video.cli import main

    def forbidden(*args, **kwargs):
        raise AssertionError("a protocol ran before the suite was checked")

    monkeypatch.setattr("ssl_video.evaluation.runner.prepare_features", forbidden)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: bad\nprotocols:\n  - {{protocol: retrieval, dataset: synthetic}}\n  - {entry}\n")
    capsys.readouterr()
    assert main(["eval", "suite", str(suite), "--encoder", "r3d_18", "--root", f"synthetic={synth}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-video: error:") and err.count("\n") == 1 and key in err, err


def test_cli_flags_and_overrides_build_the_settings(capsys):
    from ssl_video.evaluation.protocols import get_protocol, settings_from_args

    retrieval = get_protocol("retrieval")
    assert settings_from_args(retrieval, {"ks": [1, 3]}, []).ks == [1, 3]
    assert settings_from_args(retrieval, {"ks": None}, ["ks=[2]"]).ks == [2]
    pooling = settings_from_args(get_protocol("pooling"), {"heads": ["avg"]}, ["clusters=8", "gating=false"])
    assert (pooling.heads, pooling.clusters, pooling.gating) == (["avg"], 8, False)
    assert pooling.training(seed=4, device="cpu").seed == 4
    finetune = settings_from_args(get_protocol("finetune"), {"crops": 1}, ["optim.lr=0.01"])
    assert finetune.overrides == ["optim.lr=0.01"] and finetune.crops == 1


@pytest.mark.parametrize("suite", ["eval/linear_probe.yaml", "eval/retrieval.yaml", "eval/finetune.yaml",
                                   "eval/pooling.yaml", "eval/smoke_synthetic.yaml"])
def test_shipped_suites_are_valid(suite):
    from pathlib import Path

    from ssl_video.evaluation.suite import load_suite

    loaded = load_suite(Path(__file__).resolve().parents[1] / suite)
    assert loaded.protocols
