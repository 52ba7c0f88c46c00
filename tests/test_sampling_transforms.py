"""Clip start sampling and the video/audio transforms."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ssl_video.data.sampling import make_sampler, random_start, sliding_starts, uniform_starts
from ssl_video.data.transforms import (
    AudioFeatures,
    LogMel,
    VideoAugment,
    center_crop_box,
    normalize,
    random_resized_crop_box,
    video_transform,
)
from ssl_video.recipe import ClipSampling


def test_uniform_starts_cover_the_video():
    assert uniform_starts(10.0, 2.0, 5) == pytest.approx([0, 2, 4, 6, 8])
    assert uniform_starts(10.0, 2.0, 1) == pytest.approx([4.0])
    assert uniform_starts(1.0, 2.0, 3) == [0.0, 0.0, 0.0]  # shorter than a clip


def test_sliding_windows():
    assert sliding_starts(10.0, 2.0, 2.0) == pytest.approx([0, 2, 4, 6, 8])
    assert sliding_starts(10.0, 3.0, 3.0, cover_end=False) == pytest.approx([0, 3, 6])
    assert sliding_starts(10.0, 3.0, 3.0) == pytest.approx([0, 3, 6, 9])  # last window reaches the end
    assert sliding_starts(1.0, 3.0, 1.0) == [0.0]  # short video: one padded clip
    starts = sliding_starts(7.3, 16 / 15, 16 / 15)
    assert all(b - a == pytest.approx(16 / 15) for a, b in zip(starts, starts[1:]))
    assert starts[-1] + 16 / 15 >= 7.3


def test_random_start_in_range_and_seeded():
    rng = random.Random(0)
    starts = [random_start(5.0, 1.0, rng) for _ in range(500)]
    assert 0 <= min(starts) and max(starts) <= 4.0 and max(starts) - min(starts) > 3.5
    assert random_start(0.5, 1.0, rng) == 0.0
    a = make_sampler(ClipSampling("random", num_clips=3), 1.0, random.Random(7))(5.0)
    b = make_sampler(ClipSampling("random", num_clips=3), 1.0, random.Random(7))(5.0)
    assert a == b and len(a) == 3


def test_random_resized_crop_box_respects_bounds():
    rng = random.Random(1)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(60, 80, (0.14, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.1 <= h * w / 4800 <= 1.0
    # offsets actually vary (no crop pinned to a corner)
    lefts = {random_resized_crop_box(60, 80, (0.3, 0.3), (1, 1), rng)[1] for _ in range(50)}
    assert len(lefts) > 10
    assert center_crop_box(60, 80, 50) == (5, 15, 50, 50)


@pytest.mark.parametrize("height, width", [(128, 171), (128, 228), (228, 128), (180, 320), (720, 1280)])
@pytest.mark.parametrize("scale, ratio", [((0.5731, 0.5731), (1.0, 1.0)), ((0.14, 1.0), (3 / 4, 4 / 3)),
                                          ((0.9, 1.0), (3 / 4, 4 / 3))])
def test_random_resized_crop_box_varies_on_every_aspect(height, width, scale, ratio):
    # 4:3, 16:9 and 9:16 frames with the shipped crop scales: the box must move from draw to draw.
    # Catches: restoring the fixed centred fallback (a 16:9 frame with the TSP scale then gives 1 box in 200)
    rng = random.Random(3)
    boxes = [random_resized_crop_box(height, width, scale, ratio, rng) for _ in range(200)]
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0
        assert ratio[0] - 0.05 <= w / h <= ratio[1] + 0.05
    assert len(set(boxes)) >= 20


def test_video_transform_same_crop_on_every_frame():
    frame = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    video = frame.expand(6, -1, -1, -1).clone()  # identical frames
    cfg = VideoAugment(crop=24, color_jitter=1.0, grayscale=0.5, blur=0.5)
    out = video_transform(video, cfg, train=True, rng=random.Random(3))
    assert out.shape == (3, 6, 24, 24) and out.dtype == torch.float32
    for t in range(1, 6):
        assert torch.equal(out[:, t], out[:, 0])


def test_eval_transform_is_center_crop_and_normalisation():
    video = torch.randint(0, 256, (4, 3, 30, 40), dtype=torch.uint8)
    cfg = VideoAugment(crop=30, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    out = video_transform(video, cfg, train=False, rng=random.Random(0))
    want = (video[..., 5:35].float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(out, want.permute(1, 0, 2, 3), atol=1e-6)
    assert torch.allclose(normalize(video, cfg.mean, cfg.std), normalize(video.float() / 255, cfg.mean, cfg.std))


def test_log_mel_matches_torchaudio_and_sees_the_tone():
    import torchaudio

    cfg = AudioFeatures(sample_rate=16000, n_mels=40, n_fft=512, win_seconds=0.025, hop_seconds=0.01)
    t = torch.arange(16000) / 16000
    wave = torch.sin(2 * torch.pi * 2000 * t)
    feats = LogMel(cfg)(wave)
    assert feats.shape == (1, 40, 101)
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)(wave)
    assert torch.allclose(feats[0], torch.log(ref + 1e-6), atol=1e-5)
    mel_freqs = torchaudio.functional.melscale_fbanks(257, 0, 8000, 40, 16000).argmax(0) * 8000 / 256
    peak_bin = int(feats[0, :, 50].argmax())
    assert abs(float(mel_freqs[peak_bin]) - 2000) < 300


@pytest.mark.parametrize("seconds, sample_rate, frames", [(1.0, 24000, 99), (2.0, 24000, 199), (0.5, 16000, 49)])
def test_logfbank_equals_python_speech_features(seconds, sample_rate, frames):
    # The official features (GDT datasets/audio_utils.py): logfbank(int16 wav, rate, winlen=0.02, winstep=0.01,
    # nfilt=257, nfft=1024), transposed, as float32. Catches: a Hann window, centred frames, no pre-emphasis,
    # samples not scaled to int16, or a filter bank on other bins (each moves values or the 99 frames).
    psf = pytest.importorskip("python_speech_features")
    from ssl_video.data.transforms import LogFbank, audio_features, audio_transform

    cfg = AudioFeatures(features="logfbank", sample_rate=sample_rate, n_mels=257, n_fft=1024, win_seconds=0.02,
                        hop_seconds=0.01)
    g = torch.Generator().manual_seed(0)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)).clamp(-1, 1)
    module = audio_features(cfg)
    assert isinstance(module, LogFbank)
    ours = audio_transform(wave, module, cfg, train=False, rng=random.Random(0))
    int16 = np.round(wave.double().numpy() * 32768).clip(-32768, 32767).astype(np.int16)
    ref = psf.logfbank(int16, sample_rate, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024).astype("float32").T
    assert ours.shape == (1, 257, frames) == (1, *ref.shape) and cfg.time_frames(seconds) == frames
    assert np.allclose(ours[0].numpy(), ref, atol=1e-4, rtol=1e-5)
    # the volume jitter multiplies the int16 samples, as the official get_spec does
    rng = random.Random(5)
    factor = random.Random(5).uniform(0.9, 1.1)
    jittered = audio_transform(wave, module, AudioFeatures(**{**cfg.__dict__, "volume_jitter": (0.9, 1.1)}),
                               train=True, rng=rng)
    ref = psf.logfbank(int16 * factor, sample_rate, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024).T
    assert np.allclose(jittered[0].numpy(), ref.astype("float32"), atol=1e-4, rtol=1e-5)


def test_audio_contract_follows_the_feature_type():
    # The registry's audio input must be what the chosen features give. Catches: the registry keeping 99 frames
    # for the centred log-mel (which gives 101), or the STiCA default not being the official logfbank.
    from ssl_video.data.transforms import audio_features
    from ssl_video.methods.stica import input_contract
    from ssl_video.models.registry import create_encoder
    from ssl_video.recipe import ClipConfig

    for features, frames in (("logfbank", 99), ("logmel", 101)):
        audio = AudioFeatures(features=features, sample_rate=24000, n_mels=257, n_fft=1024)
        clip = ClipConfig(frames=30, fps=30, audio=audio, audio_seconds=1.0)
        spec = create_encoder("audio_resnet9", width=0.0625, **input_contract(clip)[1]).spec
        made = audio_features(audio)(torch.zeros(24000) + 0.01)
        assert spec.features == features and spec.time_frames == frames == made.shape[-1]
    assert create_encoder("audio_resnet9", width=0.0625).spec.time_frames == 99  # default: logfbank, 1 s @ 24 kHz
