"""Clip feature extraction: shapes, start times, values against a slow reference, short videos, resume,
sharding, bad files, h5/npy agreement, and global video features."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import write_index_video

from ssl_video.cli import main
from ssl_video.data.media import read_clips
from ssl_video.data.transforms import video_transform
from ssl_video.errors import UserError
from ssl_video.evaluation.features import ClipProtocol, resolve_encoder
from ssl_video.evaluation.features_io import read_features
from ssl_video.extract import compute_gvf, extract, list_videos, parse_shard, read_gvf, shard_path
from ssl_video.recipe import VideoAugment

ARGS = {"width": 0.0625}
PROTOCOL = ClipProtocol(clips=1, frames=4, fps=8.0, resize=32, crop=32)
STRIDE = 3  # frames at 8 fps
# (name, frames at 16 fps): 2.5 s, 0.25 s (shorter than one 0.5 s clip), 1.25 s
VIDEOS = {"long": 40, "short": 4, "sub/mid": 20}


def expected_starts(seconds: float) -> list[float]:
    span, stride = PROTOCOL.frames / PROTOCOL.fps, STRIDE / PROTOCOL.fps
    count = int(np.floor((seconds - span) / stride + 1e-9)) + 1 if seconds >= span else 1
    return [k * stride for k in range(count)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name, n in VIDEOS.items():
        write_index_video(root / f"{name}.mp4", n, 16.0, size=(32, 48))
    return root


@pytest.fixture(scope="module")
def encoder():
    return resolve_encoder("r3d_18", ARGS, seed=0)


def run(encoder, videos, out, **kwargs):
    kwargs = {"fmt": "npy", "protocol": PROTOCOL, "stride": STRIDE, "device": "cpu", "batch_size": 3, "workers": 0,
              "progress": False, **kwargs}
    return extract(encoder, list_videos(str(videos)), out, **kwargs)


def reference(encoder, path, starts):
    """Slow reference: decode each clip alone, transform, run the encoder."""
    feats = []
    augment = VideoAugment(crop=PROTOCOL.crop, mean=PROTOCOL.mean, std=PROTOCOL.std)
    with torch.no_grad():
        for s in starts:
            clip = read_clips(path, [s], PROTOCOL.frames, PROTOCOL.fps, size=PROTOCOL.resize, audio_rate=None)[0]
            feats.append(encoder.model(video_transform(clip.video, augment, False, random.Random(0))[None])[0])
    return torch.stack(feats).numpy()


def test_npy_shapes_times_and_values(encoder, videos, tmp_path):
    summary = run(encoder, videos, tmp_path / "npy")
    assert summary["extracted"] == 3 and summary["skipped"] == 0
    fs = read_features(tmp_path / "npy")
    assert sorted(fs.features) == ["long", "short", "sub/mid"]
    dim = encoder.model.spec.feature_dim
    for name, n in VIDEOS.items():
        starts = expected_starts(n / 16.0)
        assert fs.features[name].shape == (len(starts), dim) and fs.features[name].dtype == np.float32
        np.testing.assert_allclose(fs.start_times[name], starts, atol=1e-9)
    assert fs.features["short"].shape[0] == 1  # a video shorter than one clip gives one padded clip
    np.testing.assert_allclose(fs.features["long"], reference(encoder, str(videos / "long.mp4"),
                                                              fs.start_times["long"]), rtol=1e-4, atol=1e-5)
    manifest = json.loads((tmp_path / "npy" / "extract.json").read_text())
    assert manifest["weights_sha256"] == encoder.weights_hash and manifest["stride"] == STRIDE


def test_h5_equals_npy_and_rerun_skips(encoder, videos, tmp_path):
    run(encoder, videos, tmp_path / "npy")
    first = run(encoder, videos, tmp_path / "f.h5", fmt="h5")
    assert first["extracted"] == 3 and not (tmp_path / "f.h5.parts").exists()
    h5, npy = read_features(tmp_path / "f.h5"), read_features(tmp_path / "npy")
    for name in VIDEOS:
        np.testing.assert_array_equal(h5.features[name], npy.features[name])
        np.testing.assert_array_equal(h5.start_times[name], npy.start_times[name])
    assert h5.metadata["stride_frames"] == STRIDE
    mtime = (tmp_path / "f.h5").stat().st_mtime_ns
    again = run(encoder, videos, tmp_path / "f.h5", fmt="h5")
    assert again["extracted"] == 0 and again["already_done"] == 3
    assert (tmp_path / "f.h5").stat().st_mtime_ns == mtime  # complete: not rewritten
    # npy: a deleted video is the only one extracted again
    (tmp_path / "npy" / "short.npy").unlink()
    resumed = run(encoder, videos, tmp_path / "npy")
    assert (resumed["extracted"], resumed["already_done"]) == (1, 2)
    np.testing.assert_array_equal(read_features(tmp_path / "npy").features["short"], npy.features["short"])


def test_shards_union_equals_unsharded(encoder, videos, tmp_path):
    run(encoder, videos, tmp_path / "all.h5", fmt="h5")
    full = read_features(tmp_path / "all.h5").features
    out = tmp_path / "sharded.h5"
    keys = []
    for i in range(2):
        summary = run(encoder, videos, out, fmt="h5", shard=(i, 2))
        mine = list(read_features(shard_path(out, (i, 2))).features)
        assert summary["videos"] == len(mine)
        keys += mine
    assert sorted(keys) == sorted(full) and len(keys) == len(set(keys))
    merged = run(encoder, videos, out, fmt="h5")  # no --shard: merges what the shards did
    assert merged["extracted"] == 0 and merged["already_done"] == 3
    got = read_features(out).features
    assert sorted(got) == sorted(full)
    for name in full:
        np.testing.assert_array_equal(got[name], full[name])
    # npy shards write into one directory: the union is the unsharded directory
    for i in range(3):
        run(encoder, videos, tmp_path / "npy_sharded", shard=(i, 3))
    sharded = read_features(tmp_path / "npy_sharded").features
    assert {k: v.tolist() for k, v in sharded.items()} == {k: v.tolist() for k, v in full.items()}


def test_bad_videos_are_skipped_counted_and_reported(encoder, videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.mp4").write_bytes((videos / "long.mp4").read_bytes())
    (mixed / "empty.mp4").write_bytes(b"")
    (mixed / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    summary = run(encoder, mixed, tmp_path / "out.h5", fmt="h5")
    assert (summary["extracted"], summary["skipped"]) == (1, 2)
    assert set(summary["skipped_videos"]) == {"empty", "garbage"}
    report = json.loads((tmp_path / "out.h5.json").read_text())
    assert report["skipped"] == 2 and "empty" in report["skipped_videos"]
    assert list(read_features(tmp_path / "out.h5").features) == ["good"]


def test_another_encoder_is_refused(videos, tmp_path):
    run(resolve_encoder("r3d_18", ARGS, seed=0), videos, tmp_path / "npy")
    with pytest.raises(UserError, match="another encoder"):
        run(resolve_encoder("r3d_18", ARGS, seed=1), videos, tmp_path / "npy")


def test_gvf_is_the_max_of_clip_features(encoder, videos, tmp_path):
    run(encoder, videos, tmp_path / "npy")
    clips = read_features(tmp_path / "npy").features
    summary = compute_gvf(encoder, list_videos(str(videos)), tmp_path / "gvf.h5", protocol=PROTOCOL, stride=STRIDE,
                          device="cpu", batch_size=3, workers=0, progress=False)
    gvf = read_gvf(tmp_path / "gvf.h5")
    assert summary["written"] == 3 and sorted(gvf) == sorted(clips)
    for name, feats in clips.items():
        assert gvf[name].shape == (feats.shape[1],)
        np.testing.assert_array_equal(gvf[name], feats.max(axis=0))


@pytest.mark.parametrize("text, expected", [(None, (0, 1)), ("0/4", (0, 4)), ("3/4", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1", "a/b"])
def test_parse_shard_rejects(text):
    with pytest.raises(UserError):
        parse_shard(text)


def test_cli_list_file_and_errors(videos, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("long.mp4\nsub/mid.mp4\n")
    base = ["extract", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--clip-len", "4", "--fps", "8",
            "--stride", "3", "--resize", "32", "--crop", "32", "--workers", "0", "--no-progress"]
    assert main([*base, "--videos", str(videos), "--list", str(listing), "--out", str(tmp_path / "f.h5")]) == 0
    assert "2 extracted" in capsys.readouterr().out
    assert sorted(read_features(tmp_path / "f.h5").features) == ["long", "sub/mid"]
    assert main([*base, "--videos", str(videos), "--out", str(tmp_path / "g.h5"), "--shard", "2/2"]) == 2
    assert main([*base, "--out", str(tmp_path / "g.h5")]) == 2  # neither --videos nor --list
    assert main([*base, "--videos", str(videos), "--out", str(tmp_path / "x.txt"), "--format", "h5"]) == 2
    assert "ssl-video: error" in capsys.readouterr().err
