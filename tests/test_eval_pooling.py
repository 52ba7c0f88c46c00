"""The pooling protocol: feature files, label CSVs, splits, reports and the CLI end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ssl_video.cli import main
from ssl_video.errors import UserError
from ssl_video.evaluation.pooling import pad_batch, stratified_split
from ssl_video.evaluation.report import markdown_table, write_report
from ssl_video.features.files import read_features
from ssl_video.features.labels import read_labels_csv

DIM = 6


def make_videos(n=24, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    videos = {}
    labels = {}
    for i in range(n):
        c = i % classes
        clips = int(rng.integers(2, 7))
        x = rng.normal(size=(clips, DIM)).astype(np.float32)
        x[:, c] += 3.0
        videos[f"cls{c}/v{i:02d}"] = x
        labels[f"cls{c}/v{i:02d}"] = f"class_{c}"
    return videos, labels


def write_h5(path, videos):
    with h5py.File(path, "w") as f:
        f.attrs["encoder"] = "toy"
        for name, x in videos.items():
            ds = f.create_dataset(name, data=x)
            ds.attrs["start_times"] = np.arange(len(x)) * 0.5
    return path


def write_npy_dir(root, videos):
    for name, x in videos.items():
        path = root / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x)
        np.save(root / f"{name}.times.npy", np.arange(len(x), dtype=np.float64))
    return root


def write_csv(path, rows, header=None):
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_h5_and_npy_layouts(tmp_path):
    videos, _ = make_videos(4)
    h5 = read_features(write_h5(tmp_path / "f.h5", videos))
    npy = read_features(write_npy_dir(tmp_path / "npy", videos))
    for fs in (h5, npy):
        assert sorted(fs.features) == sorted(videos)
        assert fs.dim == DIM
        for name, x in videos.items():
            np.testing.assert_array_equal(fs.features[name], x)
            assert fs.start_times[name].shape == (len(x),)
    assert h5.metadata["encoder"] == "toy"
    # the sibling-dataset form of start times
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["a"] = np.ones((3, DIM), np.float32)
        f["a.times"] = np.array([0.0, 1.0, 2.0])
    g = read_features(tmp_path / "g.h5")
    assert list(g.features) == ["a"] and g.start_times["a"].tolist() == [0.0, 1.0, 2.0]


def test_feature_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_features(tmp_path / "missing.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no video features"):
        read_features(tmp_path / "empty")
    np.save(tmp_path / "mixed_a.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed" / "a.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "mixed" / "b.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(UserError, match="different feature sizes"):
        read_features(tmp_path / "mixed")
    (tmp_path / "x.txt").write_text("nope")
    with pytest.raises(UserError):
        read_features(tmp_path / "x.txt")


def test_labels_csv_forms(tmp_path):
    plain = read_labels_csv(write_csv(tmp_path / "a.csv", [["v1", "dog"], ["v2", "cat", "dog"]]))
    assert plain.videos == ["v1", "v2"] and plain.labels == [["dog"], ["cat", "dog"]] and plain.splits is None
    assert plain.classes == ["cat", "dog"]
    split = read_labels_csv(
        write_csv(
            tmp_path / "b.csv",
            [["v1", "train", "dog"], ["v2", "test", "cat"]],
            header=["video", "split", "label"],
        )
    )
    assert split.splits == ["train", "test"] and split.labels == [["dog"], ["cat"]]
    bad_rows = {
        "no label": [["v1"]],
        "listed twice": [["v1", "a"], ["v1", "b"]],
    }
    for message, rows in bad_rows.items():
        with pytest.raises(UserError, match=message):
            read_labels_csv(write_csv(tmp_path / "bad.csv", rows))
    with pytest.raises(UserError, match="split must be"):
        read_labels_csv(
            write_csv(tmp_path / "c.csv", [["v1", "a", "val"]], header=["video", "label", "split"])
        )
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        read_labels_csv(tmp_path / "empty.csv")


def test_stratified_split_is_seeded_and_stratified():
    keys = ["a"] * 10 + ["b"] * 3 + ["c"]
    first = stratified_split(keys, seed=5)
    assert np.array_equal(first, stratified_split(keys, seed=5))
    assert first[:10].sum() == 7 and first[10:13].sum() == 2 and first[13]
    assert not np.array_equal(first, stratified_split(keys, seed=6))


def test_pad_batch_masks_and_caps_clips():
    seqs = [np.ones((5, 2), np.float32), 2 * np.ones((2, 2), np.float32)]
    x, mask = pad_batch(seqs)
    assert x.shape == (2, 5, 2) and mask.sum(1).tolist() == [5, 2] and float(x[1, 2:].abs().sum()) == 0.0
    x, mask = pad_batch(seqs, max_clips=3)
    assert x.shape == (2, 3, 2) and mask.sum(1).tolist() == [3, 2]


def test_write_report_is_generic(tmp_path):
    table = [{"name": "a", "score": 0.5, "n": 1200}, {"name": "b", "score": 0.25, "n": 3}]
    files = write_report(
        tmp_path, {"protocol": "x", "lr": np.float64(2e-5)}, table, title="T", plot_columns=["score"]
    )
    data = json.loads(files["json"].read_text())
    assert data["table"][0]["name"] == "a" and data["protocol"] == "x"
    md = files["markdown"].read_text()
    assert "| a | 0.5000 | 1,200 |" in md and "| lr | 2e-05 |" in md
    assert files["plot:score"].stat().st_size > 1000
    assert markdown_table(table, ["n", "name"]).splitlines()[2] == "| 1,200 | a |"


def run_cli(*args):
    return main(["eval", "pooling", *map(str, args)])


def test_cli_end_to_end_h5_all_heads(tmp_path, capsys):
    videos, labels = make_videos()
    features = write_h5(tmp_path / "feats.h5", videos)
    csv = write_csv(tmp_path / "labels.csv", [[v, c] for v, c in labels.items()], header=["video", "label"])
    out = tmp_path / "out"
    code = run_cli("--features", features, "--labels", csv, "--head", "all", "clusters=2", "hidden=8", "epochs=2",
                   "batch_size=8", "--out", out)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    heads = [row["head"] for row in report["table"]]
    assert {"netvlad", "netrvlad", "netfv", "netbow", "attention_clusters", "transformer", "avg", "max", "lstm",
            "gru"} <= set(heads)
    assert report["train_videos"] + report["test_videos"] == 24 and report["metric"] == "top1"
    assert all(
        0.0 <= row["top1"] <= 1.0 and row["parameters"] >= 0 and row["train_time_s"] >= 0
        for row in report["table"]
    )
    assert "| netvlad |" in (out / "report.md").read_text()
    assert (out / "report_top1.png").stat().st_size > 1000
    assert "netfv" in capsys.readouterr().out


def test_cli_npy_multilabel_with_split_column(tmp_path):
    videos, labels = make_videos(12)
    features = write_npy_dir(tmp_path / "feats", videos)
    rows = []
    for i, (v, c) in enumerate(labels.items()):
        rows.append([v, "train" if i < 8 else "test", c] + (["extra"] if i % 2 else []))
    csv = write_csv(tmp_path / "labels.csv", rows, header=["video", "split", "label", "label"])
    out = tmp_path / "out"
    code = run_cli("--features", features, "--labels", csv, "--multilabel", "--head", "netvlad,avg", "clusters=2",
                   "hidden=8", "epochs=2", "gating=false", "--out", out)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert (
        report["split"] == "from the labels CSV"
        and report["classifier"] == "moe"
        and report["gating"] is False
    )
    assert (report["train_videos"], report["test_videos"]) == (8, 4)
    assert [row["head"] for row in report["table"]] == ["netvlad", "avg"]
    assert all(0.0 <= row["gap@20"] <= 1.0 and 0.0 <= row["mAP"] <= 1.0 for row in report["table"])


def test_cli_user_errors_exit_2(tmp_path, capsys):
    videos, labels = make_videos(6)
    features = write_h5(tmp_path / "feats.h5", videos)
    good = write_csv(tmp_path / "good.csv", [[v, c] for v, c in labels.items()])
    bad = tmp_path / "bad.csv"
    bad.write_text("video,label\nv1\n")
    multi = write_csv(tmp_path / "multi.csv", [[v, c, "x"] for v, c in labels.items()])
    cases = [
        ("--features", features, "--labels", bad),
        ("--features", features, "--labels", tmp_path / "missing.csv"),
        ("--features", tmp_path / "missing.h5", "--labels", good),
        ("--features", features, "--labels", good, "--head", "netvlat"),
        ("--features", features, "--labels", multi),  # two labels without --multilabel
        ("--features", features),
        ("--encoder", "r2plus1d_18", "--labels", good),
        ("--encoder", "r2plus1d_18"),  # no --dataset
        ("--encoder", "r2plus1d_18", "--dataset", "synthetic", "--multilabel"),
        ("--features", features, "--labels", good, "epochs=0"),
        ("--features", features, "--labels", good, "clusterz=2"),
        ("--features", features, "--labels", good, "seed=2"),
        ("--features", features, "--labels", good, "--device", "nonsense"),
    ]
    for args in cases:
        assert run_cli(*args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("ssl-video: error:") and err.count("\n") == 1, err
    assert main(["eval"]) == 2


def test_two_streams_use_the_audio_stream(tmp_path):
    """Classes live only in the audio features: the two-stream model finds them, video alone cannot."""
    rng = np.random.default_rng(0)
    video, audio, rows = {}, {}, []
    for i in range(36):
        c = i % 3
        video[f"v{i:02d}"] = rng.normal(size=(int(rng.integers(2, 7)), DIM)).astype(np.float32)
        a = rng.normal(size=(int(rng.integers(2, 5)), 4)).astype(np.float32)
        a[:, c] += 3.0
        audio[f"v{i:02d}"] = a
        rows.append([f"v{i:02d}", f"class_{c}"])
    audio.pop("v35")  # a video without audio features is skipped and counted
    csv = write_csv(tmp_path / "labels.csv", rows)
    common = ["--labels", csv, "--head", "avg,netvlad", "--device", "cpu", "clusters=2", "hidden=8", "epochs=20",
              "lr=0.01", "batch_size=8"]
    assert run_cli("--features", write_h5(tmp_path / "v.h5", video), "--out", tmp_path / "one", *common) == 0
    assert run_cli("--features", tmp_path / "v.h5", "--audio-features", write_h5(tmp_path / "a.h5", audio),
                   "--out", tmp_path / "two", *common, "audio_clusters=3") == 0
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert one["streams"] == "video" and two["streams"].startswith("video + audio")
    assert two["audio_feature_dim"] == 4 and two["audio_features"].endswith("a.h5") and two["audio_clusters"] == 3
    assert two["skipped_videos_without_features"] == 1 and two["train_videos"] + two["test_videos"] == 35
    for head_one, head_two in zip(one["table"], two["table"]):
        assert head_two["top1"] >= 0.8 and head_one["top1"] <= 0.5, (head_one, head_two)
        assert head_two["parameters"] > head_one["parameters"]


def test_two_stream_classifier_built_per_head():
    import torch

    from ssl_video.evaluation.pooling import PoolingSettings, build_classifier
    from ssl_video.models.heads import TwoStreamClassifier

    settings = PoolingSettings(clusters=4, hidden=8)
    for head in ("netvlad", "transformer", "attention_clusters", "gru"):
        model = build_classifier(head, 12, 3, settings, multilabel=False, audio_dim=6)
        assert isinstance(model, TwoStreamClassifier)
        x, a = torch.randn(2, 5, 12), torch.randn(2, 3, 6)
        assert model.eval()(x, a).shape == (2, 3)
    model = build_classifier("netvlad", 12, 3, settings, multilabel=False, audio_dim=6)
    assert model.video_pool.clusters == 4 and model.audio_pool.clusters == 2  # the paper's K and K/2


def test_encoder_path_trains_heads_per_split_on_cached_clip_features(synth, tmp_path, monkeypatch):
    root = synth
    clip_args = ["--clips", 3, "--frames", 4, "--fps", 8, "--crop", 32, "--resize", 32, "--workers", 0,
                 "--cache-dir", tmp_path / "cache"]
    out = tmp_path / "out"
    code = run_cli("--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset", "synthetic", "--root", root,
                   *clip_args, "--head", "avg,netvlad", "--batch-size", 4, "--out", out, "clusters=2", "hidden=8",
                   "epochs=2", "batch_size=4")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["name"] == "pooling" and report["protocol"]["clip"]["clips"] == 3
    assert report["videos_listed"] == report["videos_evaluated"] == 18 and report["skipped"] == []
    assert sorted(report["splits"]) == ["1", "2", "3"] and set(report["mean"]) == {"avg", "netvlad"}
    for split in report["splits"].values():
        for values in split.values():
            assert 0.0 <= values["top1"] <= values["top5"] <= 1.0
            assert values["train_videos"] + values["test_videos"] == 18
    for row in report["table"]:
        per_split = [row[f"top1_split{s}"] for s in "123"]
        assert row["top1"] == pytest.approx(np.mean(per_split)) == pytest.approx(report["mean"][row["head"]]["top1"])
    assert (out / "report.md").is_file() and (out / "report_top1.png").is_file()
    assert not report["feature_cache_hit"]

    # the linear probe with the same clips reuses the extraction: nothing is decoded again
    import ssl_video.data.clip_dataset as clip_dataset

    def no_decoding(*args, **kwargs):
        raise AssertionError("a video was decoded despite the cache")

    monkeypatch.setattr(clip_dataset, "read_clips", no_decoding)
    assert main(["eval", "linear-probe", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset",
                 "synthetic", "--root", str(root), *map(str, clip_args), "--out", str(tmp_path / "probe")]) == 0
    assert json.loads((tmp_path / "probe" / "report.json").read_text())["feature_cache_hit"]
    assert run_cli("--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset", "synthetic", "--root", root,
                   *clip_args, "--head", "avg", "--splits", "2", "--out", tmp_path / "again", "epochs=1") == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["feature_cache_hit"] and list(again["splits"]) == ["2"]
