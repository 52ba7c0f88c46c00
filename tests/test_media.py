"""The decoder: frame-exact clips at any fps, aligned audio, short/silent/bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import decode_index, write_index_video

from ssl_video.data.media import MediaError, probe, read_audio, read_clip, read_clips


def expected_indices(start: float, num: int, fps: float, src_fps: float, src_frames: int) -> list[int]:
    # frame on screen at time t: floor(t * src_fps), the last frame once past the end
    return [min(src_frames - 1, math.floor((start + i / fps) * src_fps + 1e-9)) for i in range(num)]


@pytest.mark.parametrize("fps,start", [(10.0, 0.0), (10.0, 0.73), (25.0, 1.0), (30.0, 0.5), (7.5, 0.2)])
def test_frame_exact_at_any_target_fps(index_video, fps, start):
    clip = read_clip(index_video, start, 12, fps, audio_rate=None)
    assert clip.video.dtype == torch.uint8 and clip.video.shape == (12, 3, 64, 48)
    assert decode_index(clip.video) == expected_indices(start, 12, fps, 25.0, 75)


def test_decoder_resize_keeps_frame_identity(index_video):
    short = read_clip(index_video, 0.4, 8, 10, size=32, audio_rate=None)
    assert short.video.shape[-2:] == (43, 32)  # short side 32, aspect 64:48 kept
    exact = read_clip(index_video, 0.4, 8, 10, size=(40, 40), audio_rate=None)
    assert exact.video.shape[-2:] == (40, 40)
    assert decode_index(short.video) == decode_index(exact.video) == expected_indices(0.4, 8, 10, 25, 75)


def test_variable_frame_rate_source(tmp_path):
    times = np.cumsum([0.0] + [0.04 if i % 2 else 0.1 for i in range(29)])  # alternating 10 / 25 fps
    path = write_index_video(tmp_path / "vfr.mp4", 30, 25, frame_times=times)
    clip = read_clip(path, 0.0, 20, 20.0, audio_rate=None)
    want = [int(np.searchsorted(times, i / 20 + 1e-9, side="right") - 1) for i in range(20)]
    assert decode_index(clip.video) == want


def test_exact_mode_checks_each_frame_of_the_index_answer():
    # exact mode keeps what the container's index gave only when every frame is on screen at its time:
    # catches the check always passing, or ignoring frames that end before the requested time
    from ssl_video.data.media import _frame_exact

    times = [[0.00, 0.05, 0.10]]
    frames = torch.zeros(3, 3, 2, 2, dtype=torch.uint8)
    good = (frames, torch.tensor([0.0, 0.04, 0.08]), torch.tensor([0.04, 0.04, 0.04]))
    late = (frames, torch.tensor([0.0, 0.06, 0.08]), torch.tensor([0.04, 0.04, 0.04]))
    early = (frames, torch.tensor([0.0, 0.0, 0.08]), torch.tensor([0.04, 0.04, 0.04]))
    assert _frame_exact(good, times)
    assert not _frame_exact(late, times) and not _frame_exact(early, times)
    assert not _frame_exact((frames, None, None), times)  # repaired (truncated) reads are rescanned


def test_short_video_repeats_last_frame_or_loops(tmp_path):
    path = write_index_video(tmp_path / "short.mp4", 5, 10)  # 0.5 s
    clip = read_clip(path, 0.0, 12, 10, audio_rate=None)
    assert decode_index(clip.video) == [0, 1, 2, 3, 4] + [4] * 7
    looped = read_clip(path, 0.0, 12, 10, audio_rate=None, pad="loop")
    assert decode_index(looped.video) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    late = read_clip(path, 3.0, 3, 10, audio_rate=None)  # start past the end: the last frame
    assert decode_index(late.video) == [4, 4, 4]


def test_audio_window_aligned_with_clip(index_video):
    sr = 16000
    clip = read_clip(index_video, 1.0, 16, 16.0, audio_rate=sr)  # covers [1.0, 2.0)
    assert clip.has_audio and clip.audio.shape == (sr,)
    onset = int(torch.nonzero(clip.audio.abs() > 0.1)[0])
    assert abs(onset - int(0.3 * sr)) <= int(0.004 * sr), onset  # tone starts at 1.3 s
    # a longer window centred on the clip, resampled to 8 kHz
    clip8 = read_clip(index_video, 1.0, 16, 16.0, audio_rate=8000, audio_seconds=2.0)
    assert clip8.audio.shape == (16000,) and clip8.audio_start == pytest.approx(0.5)
    onset8 = int(torch.nonzero(clip8.audio.abs() > 0.1)[0])
    assert abs(onset8 - int(0.8 * 8000)) <= int(0.004 * 8000), onset8


def test_audio_outside_stream_is_zero_padded(index_video):
    samples, has_audio = read_audio(index_video, -0.5, 1.0, 16000)
    assert has_audio and samples.shape == (16000,)
    assert samples[:8000].abs().max() == 0  # before the stream starts
    tail, _ = read_audio(index_video, 2.5, 1.0, 16000)
    assert tail[:7000].abs().max() > 0.2 and tail[-7000:].abs().max() == 0  # past the end


def test_video_without_audio_gives_zeros_and_flag(tmp_path):
    path = write_index_video(tmp_path / "silent.mp4", 20, 10)
    clip = read_clip(path, 0.0, 8, 10, audio_rate=16000)
    assert not clip.has_audio and clip.audio.shape == (12800,) and clip.audio.abs().sum() == 0
    assert not probe(path).has_audio


def test_read_clips_opens_once_and_matches_single_reads(index_video):
    starts = [0.0, 0.9, 2.2]
    clips = read_clips(index_video, starts, 6, 12.0, audio_rate=8000)
    for start, clip in zip(starts, clips):
        single = read_clip(index_video, start, 6, 12.0, audio_rate=8000)
        assert torch.equal(clip.video, single.video) and torch.equal(clip.audio, single.audio)
    # a sampler function gets the duration
    seen = []
    read_clips(index_video, lambda d: seen.append(d) or [0.0], 2, 10.0, audio_rate=None)
    assert seen == [pytest.approx(3.0)]


def test_probe_reads_metadata(index_video):
    info = probe(index_video)
    assert (info.num_frames, info.width, info.height) == (75, 48, 64)
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(3.0)
    assert info.has_audio and info.audio_sample_rate == 16000


def test_zero_byte_corrupt_and_truncated_files_raise_media_error(tmp_path, index_video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    data = index_video.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (empty, garbage, truncated, tmp_path / "does_not_exist.mp4"):
        with pytest.raises(MediaError) as info:
            read_clip(path, 0.0, 4, 10)
        assert str(path) in str(info.value) and "\n" not in info.value.reason
        with pytest.raises(MediaError):
            probe(path)


def test_truncated_with_index_first(tmp_path):
    import av

    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 64, "yuv420p"
        stream.codec_context.gop_size = 10
        from conftest import index_frames

        for image in index_frames(100):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError):
        probe(cut)  # the last frame cannot be decoded
    early = read_clip(cut, 0.0, 4, 10, audio_rate=None)  # the intact part still reads
    assert decode_index(early.video) == [0, 1, 2, 3]
    with pytest.raises(MediaError):
        read_clip(cut, 9.0, 4, 10, audio_rate=None)


def test_fixed_resize_mode_scales_to_exactly_hw(index_video):
    # Official TSP: T.Resize((128, 171)) on every frame (aspect not kept), then the crop. By hand: the native
    # frames, bilinear (antialiased) to (30, 50), centre 30 x 30 columns 10..40, normalised.
    # Catches: resize_mode fixed falling back to the short side (the crop would see other pixels).
    import torch.nn.functional as F

    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets import VideoRecord
    from ssl_video.recipe import ClipConfig, ClipSampling, VideoAugment

    cfg = ClipConfig(frames=4, fps=10, resize_mode="fixed", resize_hw=(30, 50), audio=None,
                     sampling=ClipSampling("uniform", num_clips=1), video=VideoAugment(crop=30, mean=(0.5,) * 3,
                                                                                      std=(0.25,) * 3))
    assert cfg.decode_size == (30, 50)
    sample = ClipDataset([VideoRecord(path=str(index_video), label=0, video_id="v")], cfg, train=False)[0]
    native = read_clip(index_video, 1.3, 4, 10, size=None, audio_rate=None).video
    scaled = F.interpolate(native.float(), size=(30, 50), mode="bilinear", antialias=True, align_corners=False)
    hand = ((scaled.round().clamp(0, 255)[..., 10:40] / 255 - 0.5) / 0.25).permute(1, 0, 2, 3)
    assert sample["video"].shape == (3, 4, 30, 30)
    assert (sample["video"] - hand).abs().max() < 0.05
    with pytest.raises(Exception, match=r"resize_hw"):
        ClipConfig(resize_mode="fixed")


def test_native_resize_mode_crops_the_decoded_frames(index_video):
    # Official STiCA (GDT main_stica.py -> datasets/AVideoDataset.py, pyav backend in datasets/decoder.py, which
    # ignores max_spatial_scale): frames stay at the file's resolution and the crop is taken from them. By hand:
    # the native frames, the centre 32 x 32 box, normalised.
    # Catches: resize_mode native still scaling to the short side (resize 128 would upscale the 48-pixel side).
    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets import VideoRecord
    from ssl_video.recipe import ClipConfig, ClipSampling, VideoAugment

    cfg = ClipConfig(frames=4, fps=10, resize=128, resize_mode="native", audio=None,
                     sampling=ClipSampling("uniform", num_clips=1),
                     video=VideoAugment(crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    assert cfg.decode_size is None
    sample = ClipDataset([VideoRecord(path=str(index_video), label=0, video_id="v")], cfg, train=False)[0]
    native = read_clip(index_video, 1.3, 4, 10, size=None, audio_rate=None).video
    height, width = native.shape[-2:]
    assert min(height, width) < 128
    top, left = (height - 32) // 2, (width - 32) // 2
    hand = ((native[..., top:top + 32, left:left + 32].float() / 255 - 0.5) / 0.25).permute(1, 0, 2, 3)
    assert sample["video"].shape == (3, 4, 32, 32)
    torch.testing.assert_close(sample["video"], hand, atol=1e-5, rtol=0)
