"""Untrimmed data: the TSP CSV formats, the synthetic untrimmed generator and per-segment clip sampling."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from ssl_video.cli import main
from ssl_video.data.media import probe
from ssl_video.data.untrimmed import (
    Segment,
    SegmentClipDataset,
    action_classes,
    generate_untrimmed_dataset,
    read_ground_truth_csv,
    read_metadata_csv,
    usable_segments,
    write_ground_truth_csv,
)
from ssl_video.errors import UserError
from ssl_video.recipe import ClipConfig, VideoAugment

FPS = 8.0
FRAMES = 8  # one clip = 1 s
CFG = ClipConfig(frames=FRAMES, fps=FPS, resize=32, audio=None, video=VideoAugment(crop=32))


@pytest.fixture(scope="module")
def untrimmed(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrimmed")
    summary = generate_untrimmed_dataset(out, videos=4, classes=3, seconds=8.0, fps=16.0, size=(32, 32),
                                         segment_seconds=(1.5, 3.0), gap_seconds=(0.5, 2.0), seed=5, progress=False)
    return out, summary


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_generator_writes_both_csvs_and_videos(untrimmed):
    out, summary = untrimmed
    assert summary["splits"]["train"]["videos"] == 3 and summary["splits"]["val"]["videos"] == 1
    for split in ("train", "val"):
        meta = read_metadata_csv(out / f"{split}_metadata.csv")
        segments = read_ground_truth_csv(out / f"{split}_groundtruth.csv")
        assert len(meta) == summary["splits"][split]["videos"]
        assert sum(s.action for s in segments) == summary["splits"][split]["action_segments"]
        for video in meta:
            info = probe(out / "videos" / video.filename)
            assert video.frames == info.num_frames == 128 and math.isclose(video.duration, 8.0)
            mine = [s for s in segments if s.filename == video.filename]
            # segments tile the video, actions and background alternate
            assert mine[0].start == 0 and math.isclose(mine[-1].end, video.duration)
            assert all(math.isclose(a.end, b.start) for a, b in zip(mine, mine[1:]))
            assert all(a.action != b.action for a, b in zip(mine, mine[1:]))
            assert all((s.label != "") == s.action for s in mine)
    assert set(action_classes(read_ground_truth_csv(out / "train_groundtruth.csv"))) <= set(summary["classes"])


def test_generator_is_deterministic(untrimmed, tmp_path):
    out, _ = untrimmed
    again = tmp_path / "again"
    generate_untrimmed_dataset(again, videos=4, classes=3, seconds=8.0, fps=16.0, size=(32, 32),
                               segment_seconds=(1.5, 3.0), gap_seconds=(0.5, 2.0), seed=5, progress=False)
    assert (again / "train_groundtruth.csv").read_text() == (out / "train_groundtruth.csv").read_text()
    assert (again / "videos" / "untrimmed_0001.mp4").read_bytes() == (out / "videos" / "untrimmed_0001.mp4").read_bytes()


def test_ground_truth_round_trip(tmp_path):
    segments = [Segment("v_a", "v_a.mp4", 0.0, 2.5, "", False, 10.0, 30.0, 300),
                Segment("v_a", "v_a.mp4", 2.5, 7.25, "Long Jump", True, 10.0, 30.0, 300),
                Segment("v_b", "sub/v_b.mkv", 1.0, 3.0, "High, jump", True, 4.0, 25.0, 100)]
    path = write_ground_truth_csv(tmp_path / "gt.csv", segments)
    assert read_ground_truth_csv(path) == segments
    assert _rows(path)[0]["temporal-region-label"] == "No action"
    assert action_classes(segments) == ["High, jump", "Long Jump"]


HEADER = "video-name,t-start,t-end,action-label,video-duration,filename,fps,video-frames,temporal-region-label\n"


@pytest.mark.parametrize("body, message", [
    ("v,0,1,,5,v.mp4,30,150,Maybe\n", "temporal-region-label"),
    ("v,0,1,,5,v.mp4,30,150,Action\n", "needs an action-label"),
    ("v,3,1,x,5,v.mp4,30,150,Action\n", "before t-start"),
    ("v,zero,1,x,5,v.mp4,30,150,Action\n", "column t-start must be a number"),
    ("v,0,1,x,5,,30,150,Action\n", "empty filename"),
])
def test_ground_truth_errors_name_the_line(tmp_path, body, message):
    path = tmp_path / "gt.csv"
    path.write_text(HEADER + "v,0,1,x,5,v.mp4,30,150,Action\n" + body)
    with pytest.raises(UserError, match=f"line 3: .*{message}"):
        read_ground_truth_csv(path)


def test_missing_columns_and_metadata_errors(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("video-name,t-start\nv,0\n")
    with pytest.raises(UserError, match="missing column"):
        read_ground_truth_csv(path)
    meta = tmp_path / "meta.csv"
    meta.write_text("filename,video-duration,fps,video-frames\na.mp4,2,30,60\na.mp4,2,30,60\n")
    with pytest.raises(UserError, match="listed twice"):
        read_metadata_csv(meta)


def test_usable_segments_drop_short_and_clip_to_the_video():
    segs = [Segment("v", "v.mp4", 0.0, 0.9, "", False, 5.0, 8.0, 40),  # shorter than a clip: dropped
            Segment("v", "v.mp4", 0.9, 2.0, "a", True, 5.0, 8.0, 40),
            Segment("v", "v.mp4", 4.5, 7.0, "", False, 5.0, 8.0, 40)]  # past the end: 0.5 s left, dropped
    kept = usable_segments(segs, 1.0)
    assert [(s.start, s.end) for s in kept] == [(0.9, 2.0)]
    longer = usable_segments([Segment("v", "v.mp4", 3.0, 9.0, "", False, 5.0, 8.0, 40)], 1.0)
    assert [(s.start, s.end) for s in longer] == [(3.0, 5.0)]


@pytest.mark.parametrize("clips", [1, 3])
def test_segment_clip_counts_and_starts(untrimmed, clips):
    out, _ = untrimmed
    gt = out / "train_groundtruth.csv"
    rows = _rows(gt)
    expected = sum(1 for r in rows if float(r["t-end"]) - float(r["t-start"]) >= FRAMES / FPS)
    assert expected > 0
    segments = read_ground_truth_csv(gt)
    classes = action_classes(segments)
    train = SegmentClipDataset(segments, out / "videos", CFG, classes, clips, train=True, seed=1)
    val = SegmentClipDataset(segments, out / "videos", CFG, classes, clips, train=False)
    assert len(train) == len(val) == clips * expected
    for i in range(len(val)):
        seg = val.segments[i // clips]
        sample = train[len(train) + i]  # epoch 1
        assert seg.start - 1e-6 <= sample["start"].item() <= seg.end - FRAMES / FPS + 1e-4
        assert sample["video"].shape == (3, FRAMES, 32, 32)
        assert sample["region"].item() == int(seg.action)
        assert sample["label"].item() == (classes.index(seg.label) if seg.action else -1)
        k = i % clips
        last = seg.end - seg.start - FRAMES / FPS
        want = seg.start + (last / 2 if clips == 1 else last * k / (clips - 1))
        assert val.load(i)["start"].item() == pytest.approx(want, abs=1e-5)
    # training starts are random and change with the epoch, reproducibly
    assert train[0]["start"].item() == train[0]["start"].item()
    starts = {round(train[e * len(train)]["start"].item(), 5) for e in range(4)}
    assert len(starts) > 1
    # foreground and background are about balanced (segments alternate)
    regions = [val.records[i].label >= 0 for i in range(len(val))]
    assert 0.25 < np.mean(regions) < 0.75


def test_gvf_lookup_and_unknown_labels(untrimmed):
    out, _ = untrimmed
    segments = read_ground_truth_csv(out / "train_groundtruth.csv")
    classes = action_classes(segments)
    gvf = {f"untrimmed_{i:04d}": np.full(4, float(i), np.float32) for i in range(3)}
    ds = SegmentClipDataset(segments, out / "videos", CFG, classes, 1, train=False, gvf=gvf)
    for i in range(len(ds)):
        sample = ds.load(i)
        assert sample["gvf"].tolist() == [float(int(ds.records[i].video_id[-4:]))] * 4
    with pytest.raises(UserError, match="lack 1 video"):
        SegmentClipDataset(segments, out / "videos", CFG, classes, 1, gvf={k: v for k, v in gvf.items()
                                                                            if k != "untrimmed_0002"})
    with pytest.raises(UserError, match="not among"):
        SegmentClipDataset(segments, out / "videos", CFG, classes[:1], 1)


def test_cli_synth_untrimmed(tmp_path, capsys):
    assert main(["data", "synth-untrimmed", str(tmp_path / "d"), "--videos", "2", "--seconds", "4",
                 "--classes", "2"]) == 0
    assert "train: 1 videos" in capsys.readouterr().out
    assert len(read_metadata_csv(tmp_path / "d" / "val_metadata.csv")) == 1
    assert main(["data", "synth-untrimmed", str(tmp_path / "e"), "--gap-seconds", "2", "1"]) == 2
