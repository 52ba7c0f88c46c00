"""The switches that restore the authors' behaviour (docs/FIDELITY.md), each checked against the official rule
computed by hand in the test (never against our own code). Each test names the mutation it catches."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_video.data.clip_dataset import ClipDataset
from ssl_video.data.datasets.base import VideoRecord
from ssl_video.data.video_writer import write_video
from ssl_video.errors import UserError
from ssl_video.recipe import ClipConfig

# ---------------------------------------------------------------------------------------------- STiCA data


def _video(path, seconds: float, audio_seconds: float | None, fps: int = 10, sr: int = 16000):
    frames = np.zeros((int(round(seconds * fps)), 32, 32, 3), np.uint8)
    audio = None if audio_seconds is None else 0.1 * np.ones(int(audio_seconds * sr), np.float32)
    return str(write_video(path, frames, fps, audio=audio, sample_rate=sr))


@pytest.fixture(scope="module")
def screened_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screen")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    # (path, video seconds, audio seconds or None); the official rule keeps a video iff it has an audio
    # stream and both streams last more than 1.1 s (GDT datasets/GDTPretrainDataset.py valid_video)
    specs = {"good": (2.0, 2.0), "no_audio": (2.0, None), "short_video": (0.8, 2.0), "short_audio": (2.0, 0.5),
             "good_long": (3.0, 3.0)}
    paths = {name: _video(folder / f"{name}.mp4", v, a) for name, (v, a) in specs.items()}
    paths["empty"] = str(empty)
    official = {name: a is not None and v > 1.1 and a > 1.1 for name, (v, a) in specs.items()} | {"empty": False}
    return paths, official


def test_official_video_filter_drops_what_valid_video_drops(screened_videos):
    # catches: the filter not applied, `>=` instead of `>`, the audio stream's duration ignored, videos without
    # audio kept, an unreadable file crashing the build instead of being dropped, the counts not reported
    paths, official = screened_videos
    records = [VideoRecord(path=p, label=0, video_id="v") for p in paths.values()]
    lines: list[str] = []
    cfg = ClipConfig(frames=4, fps=10, require_audio=True, min_seconds=1.1)
    dataset = ClipDataset(records, cfg, train=True, log=lines.append)
    assert sorted(r.path for r in dataset.records) == sorted(paths[n] for n, keep in official.items() if keep)
    assert dataset.dropped == {"no audio": 1, "short": 2, "unreadable": 1}
    assert len(lines) == 1 and "kept 2 of 6" in lines[0] and "1 no audio" in lines[0]


def test_video_filter_off_by_default_and_in_evaluation(screened_videos):
    # catches: probing (and dropping) without the switch, or dropping test videos of an evaluation set
    paths, _ = screened_videos
    records = [VideoRecord(path=p, label=0, video_id="v") for p in paths.values()]
    lines: list[str] = []
    assert len(ClipDataset(records, ClipConfig(frames=4, fps=10), train=True, log=lines.append)) == 6
    on = ClipConfig(frames=4, fps=10, require_audio=True, min_seconds=1.1)
    assert len(ClipDataset(records, on, train=False, log=lines.append)) == 6
    assert lines == []


def test_video_filter_min_seconds_alone_keeps_silent_videos(screened_videos):
    # catches: min_seconds implying require_audio (a video without audio has no audio stream to be short)
    paths, _ = screened_videos
    records = [VideoRecord(path=paths[n], label=0, video_id="v") for n in ("good", "no_audio", "short_video")]
    dataset = ClipDataset(records, ClipConfig(frames=4, fps=10, min_seconds=1.1), train=True, log=lambda m: None)
    assert [r.path for r in dataset.records] == [paths["good"], paths["no_audio"]]


def test_video_filter_leaving_nothing_is_a_user_error(screened_videos):
    # catches: an empty training set reaching the trainer (a crash far from the cause)
    paths, _ = screened_videos
    cfg = ClipConfig(frames=4, fps=10, require_audio=True, min_seconds=1.1)
    with pytest.raises(UserError, match="passes the filter"):
        ClipDataset([VideoRecord(path=paths["no_audio"], label=0, video_id="v")], cfg, train=True, log=lambda m: None)
