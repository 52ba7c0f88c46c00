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


# ---------------------------------------------------------------------------------------------- TSP


def _tiny_tsp(**kwargs):
    import torch

    from ssl_video.methods.tsp import TSP
    from ssl_video.models.registry import create_encoder
    from tests.factories import TINY_VIDEO

    torch.manual_seed(0)
    return TSP(create_encoder("r2plus1d_18", **TINY_VIDEO), 3, **kwargs)


def _tsp_batch(dim: int):
    import torch

    g = torch.Generator().manual_seed(0)
    label = torch.tensor([0, -1, 1, -1])
    return {"video": torch.randn(4, 3, 4, 32, 32, generator=g), "label": label, "region": (label >= 0).long(),
            "gvf": torch.randn(4, dim, generator=g)}


def test_tsp_stem_batchnorm_statistics_update_as_the_official_run():
    # official (TSP train/train.py): stem lr 0, model.train(): each stem BN's running mean becomes
    # (1 - momentum) * old + momentum * mean of its input over (N, T, H, W), by hand below.
    # catches: stem_bn=train still putting the stem in eval mode, or the stem's weights trainable
    import torch

    method = _tiny_tsp(freeze_stem=True, stem_bn="train").train()
    norms = [m for m in method.video_encoder.stem.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert norms
    seen, before = {}, [m.running_mean.clone() for m in norms]
    hooks = [m.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, args[0].detach()))
             for i, m in enumerate(norms)]
    weights = {k: v.clone() for k, v in method.video_encoder.stem.named_parameters()}
    method(_tsp_batch(method.video_encoder.spec.feature_dim))["loss"].backward()
    for h in hooks:
        h.remove()
    for i, m in enumerate(norms):
        want = (1 - m.momentum) * before[i] + m.momentum * seen[i].mean(dim=(0, 2, 3, 4))
        torch.testing.assert_close(m.running_mean, want)
    assert all(p.grad is None and torch.equal(p, weights[k]) for k, p in method.video_encoder.stem.named_parameters())
    frozen = _tiny_tsp(freeze_stem=True).train()  # ours: statistics kept
    assert not frozen.video_encoder.stem.training


def test_tsp_official_head_init_is_normal_001_with_zero_bias():
    # official (TSP models/model.py _build_fc): nn.init.normal_(weight, 0, 0.01), bias 0, for both heads.
    # catches: std 0.1 (variance/std confusion), the bias left at PyTorch's default, one head forgotten
    import torch

    method = _tiny_tsp(head_init="official")
    weights = torch.cat([method.action_head.weight.flatten(), method.region_head.weight.flatten()])
    assert abs(weights.std().item() - 0.01) < 0.002 and abs(weights.mean().item()) < 0.002
    assert not method.action_head.bias.any() and not method.region_head.bias.any()
    default = _tiny_tsp()  # PyTorch's uniform(+-1/sqrt(fan_in)): a non-zero bias
    assert default.action_head.bias.abs().sum() > 0
