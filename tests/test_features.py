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
from ssl_video.features.files import read_features
from ssl_video.features.gvf import compute_gvf, read_gvf
from ssl_video.features.protocol import ClipProtocol
from ssl_video.features.sliding import extract
from ssl_video.features.videos import list_videos, parse_shard, shard_path
from ssl_video.models.io import resolve_encoder
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
    base = ["extract", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--frames", "4", "--fps", "8",
            "--stride", "3", "--resize", "32", "--crop", "32", "--workers", "0", "--no-progress"]
    assert main([*base, "--videos", str(videos), "--list", str(listing), "--out", str(tmp_path / "f.h5")]) == 0
    assert "2 extracted" in capsys.readouterr().out
    assert sorted(read_features(tmp_path / "f.h5").features) == ["long", "sub/mid"]
    assert main([*base, "--videos", str(videos), "--out", str(tmp_path / "g.h5"), "--shard", "2/2"]) == 2
    assert main([*base, "--out", str(tmp_path / "g.h5")]) == 2  # neither --videos nor --list
    assert main([*base, "--videos", str(videos), "--out", str(tmp_path / "x.txt"), "--format", "h5"]) == 2
    assert "ssl-video: error" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- dataset cache


def test_cache_keeps_every_clip_feature_in_time_order(synth, tmp_path):
    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets.base import VideoRecord
    from ssl_video.features.dataset import extract_features
    from ssl_video.recipe import ClipConfig, ClipSampling, VideoAugment

    encoder = resolve_encoder("r3d_18", {"width": 0.0625})
    paths = sorted(str(p) for p in (synth / "UCF-101").rglob("*.mp4"))[:5]
    protocol = ClipProtocol(clips=3, frames=4, fps=8.0, resize=32, crop=32)
    table = extract_features(encoder, paths, protocol, batch_size=2, num_workers=0, cache_dir=tmp_path,
                             progress=False)
    assert table.clips.shape == (5, 3, table.mean.shape[1]) and table.clips.dtype == np.float16
    clips = table.clips.astype(np.float32)
    np.testing.assert_allclose(clips.mean(1), table.mean, rtol=2e-3, atol=2e-3)
    normalised = clips / np.linalg.norm(clips, axis=-1, keepdims=True)
    np.testing.assert_allclose(normalised.mean(1), table.mean_l2, rtol=2e-3, atol=2e-3)
    # a slow reference: the encoder on the three uniformly spaced clips of one video, one clip at a time
    cfg = ClipConfig(frames=4, fps=8.0, resize=32, sampling=ClipSampling(mode="uniform", num_clips=3),
                     video=VideoAugment(crop=32), audio=None)
    video = ClipDataset([VideoRecord(paths[3], -1, "v")], cfg, train=False)[0]["video"]
    with torch.no_grad():
        reference = torch.cat([encoder.model(clip[None]) for clip in video]).numpy()
    np.testing.assert_allclose(clips[3], reference, rtol=1e-2, atol=1e-3)
    # a cache hit memory-maps the same clip features; an entry whose clip file is gone is extracted again
    again = extract_features(encoder, paths, protocol, cache_dir=tmp_path, num_workers=0, progress=False)
    assert again.cache_hit and isinstance(again.clips, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.clips), table.clips)
    for clip_file in tmp_path.glob("*.clips.npy"):
        clip_file.unlink()
    rebuilt = extract_features(encoder, paths, protocol, cache_dir=tmp_path, num_workers=0, progress=False)
    assert not rebuilt.cache_hit and rebuilt.clips.shape == table.clips.shape


@pytest.fixture
def cache_videos(synth, tmp_path):
    """Copies of five synthetic videos (a test may rewrite them) and a tiny encoder and protocol."""
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    paths = []
    for source in sorted((synth / "UCF-101").rglob("*.mp4"))[:5]:
        paths.append(str(shutil.copy(source, folder / source.name)))
    return paths, ClipProtocol(clips=2, frames=4, fps=8.0, resize=32, crop=32)


def _extract(encoder, paths, protocol, cache_dir):
    from ssl_video.features.dataset import extract_features

    return extract_features(encoder, paths, protocol, device="cpu", batch_size=4, num_workers=0,
                            cache_dir=cache_dir, progress=False)


def test_the_cache_misses_when_the_weights_change(cache_videos, tmp_path):
    # mutation: the weights left out of the cache key (re-evaluating after more training would serve the
    # features of the old weights)
    paths, protocol = cache_videos
    first = _extract(resolve_encoder("r3d_18", ARGS, seed=1), paths, protocol, tmp_path / "cache")
    assert _extract(resolve_encoder("r3d_18", ARGS, seed=1), paths, protocol, tmp_path / "cache").cache_hit
    other = _extract(resolve_encoder("r3d_18", ARGS, seed=2), paths, protocol, tmp_path / "cache")
    assert not other.cache_hit and not np.allclose(other.mean, first.mean)


@pytest.mark.parametrize("field, value", [("clips", 3), ("frames", 2), ("fps", 4.0), ("resize", 40), ("crop", 24),
                                          ("mean", (0.5, 0.5, 0.5)), ("std", (0.3, 0.3, 0.3))])
def test_every_protocol_field_is_in_the_cache_key(cache_videos, field, value):
    # mutation: any protocol field dropped from the key (features of another clip protocol served)
    import dataclasses

    from ssl_video.features.cache import cache_path

    paths, protocol = cache_videos
    changed = dataclasses.replace(protocol, **{field: value})
    assert cache_path("w", paths, changed, "c") != cache_path("w", paths, protocol, "c")
    assert cache_path("w", paths, dataclasses.replace(protocol), "c") == cache_path("w", paths, protocol, "c")


def test_the_cache_misses_when_a_video_changes(cache_videos, synth, tmp_path):
    # mutation: the file list keyed by path only (a re-encoded or replaced video would keep old features)
    import os
    import shutil

    paths, protocol = cache_videos
    encoder = resolve_encoder("r3d_18", ARGS, seed=1)
    first = _extract(encoder, paths, protocol, tmp_path / "cache")
    replacement = sorted((synth / "UCF-101").rglob("*.mp4"))[-1]  # another class: other content
    shutil.copy(replacement, paths[0])
    os.utime(paths[0], ns=(1, 1))
    again = _extract(encoder, paths, protocol, tmp_path / "cache")
    assert not again.cache_hit and not np.allclose(again.mean[0], first.mean[0])
    np.testing.assert_allclose(again.mean[1:], first.mean[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage", ["clips", "table"])
def test_an_extraction_killed_while_saving_is_never_read_as_complete(cache_videos, tmp_path, monkeypatch, stage):
    # mutation: the entry's marker (.npz) written before its clip features, or written in place (a kill
    # midway would leave an entry that reads as complete with missing or partial clip features)
    from ssl_video.features import cache

    paths, protocol = cache_videos
    encoder = resolve_encoder("r3d_18", ARGS, seed=1)
    real = {"clips": np.save, "table": np.savez}[stage]

    def killed(file, *args, **kwargs):
        with open(file, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "save" if stage == "clips" else "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        _extract(encoder, paths, protocol, tmp_path / "cache")
    monkeypatch.setattr(cache.np, "save" if stage == "clips" else "savez", real)
    assert not list((tmp_path / "cache").glob("*.npz"))
    table = _extract(encoder, paths, protocol, tmp_path / "cache")
    assert not table.cache_hit and table.ok.all()
    assert _extract(encoder, paths, protocol, tmp_path / "cache").cache_hit


# ---------------------------------------------------------------------------------------------- the one loop


def test_run_batches_yields_decoded_batches_and_records_each_bad_file_once():
    from ssl_video.data.bad_files import BadFiles
    from ssl_video.features.extraction import run_batches

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).train()
    loader = [{"skipped": ["a.mp4\tcorrupt"], "video": torch.ones(2, 3), "index": torch.tensor([0, 1])},
              {"skipped": ["b.mp4\tmissing file", "a.mp4\tcorrupt again"]},  # nothing decoded: not yielded
              {"skipped": [], "video": torch.zeros(1, 3, dtype=torch.float64), "index": torch.tensor([2])}]
    messages = []
    bad = BadFiles(log=messages.append)
    out = list(run_batches(model.double(), loader[2:], torch.device("cpu"), BadFiles()))
    assert out[0][1].dtype == torch.float32  # outputs always float32 on the CPU
    model.float()
    out = list(run_batches(model, loader[:2], torch.device("cpu"), bad))
    assert len(out) == 1 and out[0][0]["index"].tolist() == [0, 1] and not model.training
    with torch.no_grad():
        assert torch.equal(out[0][1], model(torch.ones(2, 3)))
    assert not out[0][1].requires_grad
    assert bad.as_dict() == {"a.mp4": "corrupt", "b.mp4": "missing file"} and bad.count == 2
    assert len(messages) == 2 and "a.mp4: corrupt" in messages[0]  # reported once, first reason kept
    doubled = list(run_batches(model, loader[:1], torch.device("cpu"), bad, forward=lambda v: 2 * model(v)))
    assert torch.allclose(doubled[0][1], 2 * out[0][1]) and len(messages) == 2


def test_dataset_extraction_records_missing_and_corrupt_files(synth, tmp_path):
    from ssl_video.features.dataset import extract_features

    encoder = resolve_encoder("r3d_18", {"width": 0.0625})
    good = sorted(str(p) for p in (synth / "UCF-101").rglob("*.mp4"))[:2]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 100)
    paths = [good[0], str(tmp_path / "missing.mp4"), str(corrupt), good[1]]
    protocol = ClipProtocol(clips=2, frames=4, fps=8.0, resize=32, crop=32)
    table = extract_features(encoder, paths, protocol, device="cpu", batch_size=2, num_workers=0, use_cache=False,
                             progress=False)
    assert table.ok.tolist() == [True, False, False, True]
    assert list(table.skipped) == [paths[1], paths[2]] and table.skipped[paths[1]] == "missing file"
    assert table.clips_decoded == 4
