"""The synthetic audio-visual dataset: UCF101 layout, splits, determinism, audio-visual sync, files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from ssl_video.data.synth import (
    class_design,
    class_names,
    generate_synthetic_dataset,
    render_video,
    split_groups,
    video_seed,
)
from ssl_video.errors import UserError

FILE_NAME = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d{2})_c(?P<clip>\d{2})\.mp4$")
SETTINGS = dict(classes=3, videos_per_class=5, seconds=1.0, fps=8.0, size=(16, 24), seed=3, sample_rate=8000)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate_synthetic_dataset(out, no_audio_fraction=0.4, progress=False, **SETTINGS)
    return out, summary


def _read_list(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_layout_and_split_files(dataset):
    out, summary = dataset
    names = class_names(3)
    assert summary["class_names"] == names and summary["classes"] == 3 and summary["videos"] == 15
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]*", n) for n in names)
    lists = out / "ucfTrainTestlist"
    assert _read_list(lists / "classInd.txt") == [[str(i + 1), n] for i, n in enumerate(names)]
    label_of = {n: i + 1 for i, n in enumerate(names)}

    files = sorted(p.relative_to(out / "UCF-101").as_posix() for p in (out / "UCF-101").rglob("*.mp4"))
    assert len(files) == 15
    group_of = {}
    for rel in files:
        folder, name = rel.split("/")
        match = FILE_NAME.match(name)
        assert match and match["cls"] == folder and folder in label_of, rel
        group_of[rel] = int(match["group"])

    test_sets = []
    for s in (1, 2, 3):
        train = _read_list(lists / f"trainlist{s:02d}.txt")
        test = _read_list(lists / f"testlist{s:02d}.txt")
        assert all(len(row) == 2 and int(row[1]) == label_of[row[0].split("/")[0]] for row in train)
        assert all(len(row) == 1 for row in test)
        train_files, test_files = {r[0] for r in train}, {r[0] for r in test}
        assert train_files.isdisjoint(test_files) and sorted(train_files | test_files) == files
        assert {group_of[f] for f in train_files}.isdisjoint({group_of[f] for f in test_files})
        for name in names:  # every class has train and test videos in every split
            assert any(f.startswith(name + "/") for f in test_files)
            assert any(f.startswith(name + "/") for f in train_files)
        test_sets.append(test_files)
    assert len({frozenset(t) for t in test_sets}) == 3

    record = json.loads((out / "synth.json").read_text())
    assert {k: record[k] for k in summary} == summary
    assert len(record["video_list"]) == 15 and record["parameters"]["videos_per_class"] == 5


def test_split_rule():
    assert split_groups(25) == [list(range(1, 8)), list(range(8, 15)), list(range(15, 22))]
    for groups in range(2, 31):
        splits = split_groups(groups)
        for test in splits:
            assert 1 <= len(test) < groups and set(test) <= set(range(1, groups + 1))
        if groups >= 3:
            assert len({tuple(t) for t in splits}) == 3
    with pytest.raises(UserError):
        split_groups(1)


def test_no_audio_fraction_and_decoded_files(dataset):
    out, summary = dataset
    rows = json.loads((out / "synth.json").read_text())["video_list"]
    assert summary["videos_without_audio"] == round(0.4 * 15) == sum(not r["audio"] for r in rows)
    frames = round(SETTINGS["seconds"] * SETTINGS["fps"])
    for row in rows:
        with av.open(str(out / "UCF-101" / row["path"])) as container:
            assert bool(container.streams.audio) == row["audio"], row["path"]
            if row["index"] != 0:
                continue
            video = container.streams.video[0]
            assert float(video.average_rate) == pytest.approx(SETTINGS["fps"])
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(decoded) == frames
            assert decoded[0].shape == (*SETTINGS["size"], 3)
            duration = container.duration / 1e6
            assert abs(duration - SETTINGS["seconds"]) <= 1.0 / SETTINGS["fps"]
    # The file holds what render_video draws (up to compression).
    row = next(r for r in rows if r["audio"] and r["index"] == 0)
    expected, _, _ = render_video(row["class_index"], 3, video_seed(3, row["class_index"], 0), 1.0, 8.0,
                                  (16, 24), 8000)
    with av.open(str(out / "UCF-101" / row["path"])) as container:
        got = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(out / "UCF-101" / row["path"])) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert np.abs(got.astype(float) - expected).mean() < 12
    assert abs(audio.size - 8000) <= 2048  # AAC frames of 1024 samples


def test_render_is_deterministic():
    a = render_video(2, 4, video_seed(0, 2, 1), 1.0, 16.0, (32, 32), 16000)
    b = render_video(2, 4, video_seed(0, 2, 1), 1.0, 16.0, (32, 32), 16000)
    c = render_video(2, 4, video_seed(1, 2, 1), 1.0, 16.0, (32, 32), 16000)
    assert a[0].dtype == np.uint8 and a[0].shape == (16, 32, 32, 3)
    assert a[1].dtype == np.float32 and a[1].shape == (16000,)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_workers_do_not_change_the_output(tmp_path):
    kwargs = dict(classes=1, videos_per_class=2, seconds=0.5, fps=8.0, size=(16, 16), progress=False)
    generate_synthetic_dataset(tmp_path / "one", workers=1, **kwargs)
    generate_synthetic_dataset(tmp_path / "two", workers=2, **kwargs)
    for path in sorted((tmp_path / "one" / "UCF-101").rglob("*.mp4")):
        other = tmp_path / "two" / path.relative_to(tmp_path / "one")
        with av.open(str(path)) as x, av.open(str(other)) as y:
            fx = [f.to_ndarray(format="rgb24") for f in x.decode(video=0)]
            fy = [f.to_ndarray(format="rgb24") for f in y.decode(video=0)]
        assert np.array_equal(np.stack(fx), np.stack(fy))


@pytest.mark.parametrize("class_index", [0, 3, 5])
def test_audio_onsets_follow_visual_turning_points(class_index):
    sr, fps, seconds = 16000, 16.0, 2.0
    frames, audio, info = render_video(class_index, 6, video_seed(7, class_index, 0), seconds, fps, (32, 32),
                                       sr, clean=True)
    turns = info["turning_times"]
    assert len(turns) >= (2 if class_index % 2 == 0 else 5)
    peak = np.abs(audio).max()
    for t in turns:
        start = int(np.ceil(t * sr))
        if start < int(0.005 * sr) or start + int(0.003 * sr) > audio.size:
            continue
        before = np.abs(audio[start - int(0.005 * sr):start]).max()
        after = np.abs(audio[start:start + int(0.003 * sr)]).max()
        assert before < 0.02 * peak and after > 0.3 * peak, t
    # The object really is at the recorded positions, and the turning points are its extremes.
    for frame, (x, y) in zip(frames, info["positions"]):
        assert np.abs(frame[round(y), round(x)] / 255.0 - info["colour"]).max() < 0.02
    axis = np.radians(info["angle_deg"])
    along = (info["positions"] - info["centre"]) @ np.array([np.cos(axis), -np.sin(axis)])
    for t in turns:
        i = int(round(t * fps))
        if 0 < i < len(along) - 1 and abs(t * fps - i) < 0.25:
            assert abs(along[i]) > 0.8 * info["amplitude_px"]
            assert (along[i - 1] - along[i]) * (along[i + 1] - along[i]) > 0  # a local extreme
    # The noisy render draws the same video plus noise.
    noisy, noisy_audio, _ = render_video(class_index, 6, video_seed(7, class_index, 0), seconds, fps, (32, 32), sr)
    assert np.abs(noisy.astype(float) - frames).mean() < 0.1 * 255
    assert not np.array_equal(noisy_audio, audio)


def test_class_design_generalises():
    assert class_names(1) == ["Axis000Slow"]
    assert class_names(8)[:3] == ["Axis000Slow", "Axis000Fast", "Axis045Slow"]
    frames, audio, _ = render_video(0, 1, 0, 0.5, 16.0, (32, 32), 16000)
    assert frames.shape == (8, 32, 32, 3) and audio.shape == (8000,)
    for classes, sample_rate in [(8, 16000), (5, 16000), (16, 16000), (40, 8000)]:
        names = class_names(classes)
        assert len(set(names)) == classes
        design = class_design(classes, sample_rate)
        pitches = sorted({d["pitch_hz"] for d in design})
        jitter = design[0]["pitch_jitter"]
        assert len(pitches) == (classes + 1) // 2
        assert all(lo * (1 + jitter) < hi * (1 - jitter) for lo, hi in zip(pitches, pitches[1:]))
        assert 2 * pitches[-1] * (1 + jitter) < sample_rate / 2
    assert [d["pitch_hz"] for d in class_design(8)][::2] == [300, 600, 1200, 2400]


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError):
        render_video(0, 2, 0, 1.0, 16.0, (31, 32), 16000)
    with pytest.raises(UserError):
        generate_synthetic_dataset(tmp_path, classes=0, progress=False)
    with pytest.raises(UserError):
        generate_synthetic_dataset(tmp_path, videos_per_class=1, progress=False)


@pytest.mark.parametrize("amplitude", [(3.0, 5.0), (7.0, 10.0)])
def test_amplitude_range_sets_how_far_the_object_moves(amplitude):
    for seed in range(6):
        _, _, info = render_video(seed % 8, rng=seed, seconds=2.0, amplitude_px=amplitude, clean=True)
        assert amplitude[0] <= info["amplitude_px"] <= amplitude[1]
        positions = np.asarray(info["positions"])
        # the object's excursion along its axis spans the amplitude on both sides (two full cycles at most)
        centred = positions - positions.mean(0)
        assert np.abs(centred).max() <= info["amplitude_px"] + 1.0
    with pytest.raises(UserError, match="amplitude_px"):
        render_video(0, amplitude_px=(5.0, 3.0))
