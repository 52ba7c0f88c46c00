"""The switches that restore the authors' behaviour (docs/FIDELITY.md), each checked against the official rule
computed by hand in the test (never against our own code). Each test names the mutation it catches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    # catches: the filter not applied, the audio stream's duration ignored, videos without audio kept, an
    # unreadable file crashing the build instead of being dropped, the counts not reported (the 1.1 s boundary:
    # test_video_filter_threshold_is_strict_on_both_streams)
    paths, official = screened_videos
    records = [VideoRecord(path=p, label=0, video_id="v") for p in paths.values()]
    lines: list[str] = []
    cfg = ClipConfig(frames=4, fps=10, require_audio=True, min_seconds=1.1)
    dataset = ClipDataset(records, cfg, train=True, log=lines.append)
    assert sorted(r.path for r in dataset.records) == sorted(paths[n] for n, keep in official.items() if keep)
    assert dataset.dropped == {"no audio": 1, "short": 2, "unreadable": 1}
    assert len(lines) == 1 and "kept 2 of 6" in lines[0] and "1 no audio" in lines[0]


@pytest.mark.parametrize("video, audio, kept", [
    (1.1, 2.0, False), (2.0, 1.1, False), (1.1000001, 1.1000001, True), (2.0, None, False)])
def test_video_filter_threshold_is_strict_on_both_streams(monkeypatch, video, audio, kept):
    # official (GDT datasets/AVideoDataset.py valid_video): kept iff audio_stream and
    # float(video_stream['duration']) > 1.1 and float(audio_stream['duration']) > 1.1. Exactly 1.1 s on either
    # stream is dropped. Durations are set through the probe (a container cannot be written to last 1.1 s exactly).
    # catches: `>=` instead of `>`, only the video stream's duration compared, a video without audio kept
    from ssl_video.data import clip_dataset
    from ssl_video.data.media import MediaInfo

    fields = {f: None for f in MediaInfo.__dataclass_fields__}
    info = MediaInfo(**{**fields, "duration": video, "audio_duration": audio, "has_audio": audio is not None})
    monkeypatch.setattr(clip_dataset, "probe", lambda path, decode=True: info)
    official = audio is not None and video > 1.1 and audio > 1.1
    assert official == kept
    assert (clip_dataset.screen_reason("x.mp4", True, 1.1) is None) == official


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


def test_header_durations_drop_a_stream_without_one_as_valid_video_does(tmp_path):
    # official (GDT datasets/AVideoDataset.py valid_video): ffprobe's stream 'duration' of both streams, compared
    # with `> 1.1`; a stream without the field (MKV) makes float() raise inside the try, and the video is dropped.
    # By hand from the container: an MP4 writes stream durations (kept, 2 s), an MKV does not (dropped).
    # catches: screen_durations ignored (the MKV kept), content lengths compared in header mode, a missing header
    # duration replaced by the video's in header mode
    from ssl_video.data.clip_dataset import screen_reason
    from ssl_video.data.media import probe

    mp4 = _video(tmp_path / "a.mp4", 2.0, 2.0)
    mkv = _video(tmp_path / "a.mkv", 2.0, 2.0)
    assert probe(mp4, decode=False).header_duration == pytest.approx(2.0)
    assert probe(mkv, decode=False).header_duration is None  # what ffprobe reports: no stream duration
    assert screen_reason(mp4, True, 1.1, "header") is None
    assert screen_reason(mkv, True, 1.1, "header") == "no duration"
    assert screen_reason(mkv, True, 1.1, "content") is None  # ours: the frames give the length


def test_header_durations_are_the_lengths_compared(monkeypatch):
    # catches: header mode still comparing the content lengths (here 3 s of frames, a 1.0 s header)
    from ssl_video.data import clip_dataset
    from ssl_video.data.media import MediaInfo

    fields = {f: None for f in MediaInfo.__dataclass_fields__}
    info = MediaInfo(**{**fields, "duration": 3.0, "audio_duration": 3.0, "has_audio": True,
                        "header_duration": 1.0, "audio_header_duration": 3.0})
    monkeypatch.setattr(clip_dataset, "probe", lambda path, decode=True: info)
    assert clip_dataset.screen_reason("x.mp4", True, 1.1, "header") == "short"
    assert clip_dataset.screen_reason("x.mp4", True, 1.1, "content") is None


def test_audio_overrun_shift_ends_the_window_with_the_stream(tmp_path):
    # official (GDT datasets/audio_utils.py get_spec): with N = sr * num_sec samples from the clip start,
    # `if start + N > len(wav): start = len(wav) - N`, i.e. the window wav[len(wav) - N:]. By hand: the whole
    # audio stream decoded once, its last N samples. The video lasts 3 s, the audio 2 s (a ramp, so every sample
    # says where it is); the clip at 1.5 s asks for [1.5, 2.5).
    # catches: the switch ignored (half the window zeros), a shift by the wrong amount, audio_start not moved
    from ssl_video.data.media import read_audio, read_clip

    sr = 16000
    ramp = np.linspace(-0.5, 0.5, 2 * sr, dtype=np.float32)
    frames = np.zeros((30, 32, 32, 3), np.uint8)
    path = str(write_video(tmp_path / "v.mp4", frames, 10, audio=ramp, sample_rate=sr))
    whole, _ = read_audio(path, 0.0, 2.0, sr)
    zeros = read_clip(path, 1.5, 10, 10.0, audio_rate=sr)
    shifted = read_clip(path, 1.5, 10, 10.0, audio_rate=sr, audio_overrun="shift")
    assert zeros.audio[sr // 2 + 200:].abs().max() == 0  # past the stream's end: silence
    assert shifted.audio_start == pytest.approx(1.0)
    torch.testing.assert_close(shifted.audio, whole[-sr:], atol=1e-4, rtol=0)
    inside = read_clip(path, 0.5, 10, 10.0, audio_rate=sr, audio_overrun="shift")  # nothing to shift
    torch.testing.assert_close(inside.audio, read_clip(path, 0.5, 10, 10.0, audio_rate=sr).audio)


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


# ---------------------------------------------------------------------------------------------- learnable pooling


def _bn_train(z):
    """BatchNorm in training mode by hand (fresh affine: gamma 1, beta 0): batch mean, biased variance."""
    return (z - z.mean(0)) / (z.var(0, unbiased=False) + 1e-5).sqrt()


def test_context_gating_with_batch_norm_is_sigmoid_bn_xw_times_x():
    # official (LOUPE loupe.py context_gating, add_batch_norm=True): gates = sigmoid(BN(X W)), no bias.
    # catches: the bias kept next to BN, BN skipped, the gate applied to XW instead of X
    import torch

    from ssl_video.models.heads import ContextGating

    torch.manual_seed(0)
    gate = ContextGating(6, batch_norm=True).train()
    x = torch.randn(5, 6)
    assert gate.fc.bias is None
    torch.testing.assert_close(gate(x), torch.sigmoid(_bn_train(x @ gate.fc.weight.T)) * x)


def _moe_by_hand(h, moe, classes: int, experts: int):
    import torch

    g = torch.softmax((h @ moe.gates.weight.T).view(len(h), classes, experts + 1), dim=-1)  # gates: no bias
    e = torch.sigmoid((h @ moe.experts_fc.weight.T + moe.experts_fc.bias).view(len(h), classes, experts))
    return (g[..., :experts] * e).sum(-1)


def test_official_classifier_block_by_hand():
    # official (WILLOW frame_level_models.py NetVLADModelLF with netvlad_relu=False, gating=True, add_batch_norm;
    # video_level_models.py MoeModel with moe_prob_gating): h = vW + b (no BN, no ReLU); h = h * sigmoid(BN(h Wg));
    # p = MoE(h) with gates without bias; p = p * sigmoid(BN(p Wp)).
    # catches: hidden BN kept, the gating bias kept, a bias on the MoE gates, the output gate without BN or
    # gating logits instead of probabilities
    import torch

    from ssl_video.models.heads import _Classifier

    torch.manual_seed(0)
    block = _Classifier(12, 4, 8, gating=True, classifier="moe", experts=2, dropout=0.0, relu=False,
                        hidden_bn=False, gating_bn=True, output_gating="official", moe_gate_bias=False).train()
    v = torch.randn(6, 12)
    h = v @ block.fc.weight.T + block.fc.bias
    h = h * torch.sigmoid(_bn_train(h @ block.gate.fc.weight.T))
    p = _moe_by_hand(h, block.classifier, 4, 2)
    p = p * torch.sigmoid(_bn_train(p @ block.output_gate.fc.weight.T))
    torch.testing.assert_close(torch.sigmoid(block(v)), p, atol=1e-6, rtol=1e-5)
    linear = _Classifier(12, 4, 8, gating=True, classifier="linear", experts=2, dropout=0.0, relu=False,
                         output_gating="official")
    assert linear.output_gate is None  # the official code gates only MoE probabilities


def test_moe_l2_penalty_is_slim_l2_regularizer_on_weights():
    # official: slim.l2_regularizer(moe_l2) on the gate and expert weights = moe_l2 * sum(w^2) / 2, biases free.
    # catches: the expert bias penalised, a missing factor 1/2, one of the two weight matrices left out
    import torch

    from ssl_video.models.heads import MixtureOfExperts

    torch.manual_seed(0)
    moe = MixtureOfExperts(5, 3, 2, gate_bias=False)
    by_hand = sum(float((w.detach() ** 2).sum()) for w in (moe.gates.weight, moe.experts_fc.weight)) / 2
    assert moe.gates.bias is None and abs(float(moe.l2_penalty().detach()) - by_hand) < 1e-6


def test_netfv_global_second_order_by_hand():
    # official (LOUPE loupe.py NetFV): fv2_k = sum_i a_ik ((x_i - c_k)^2 / sigma_k^2 - 1) flattened, then L2
    # over all K*D values only; fv1 = sum_i a_ik (x_i - c_k) / sigma_k, L2 per cluster then globally.
    # catches: intra-normalisation still applied to the second order (ours), or dropped from the first
    import torch

    from ssl_video.models.pooling import NetFV

    torch.manual_seed(0)
    head = NetFV(4, clusters=3, second_order="global").eval()  # eval: BN with fresh statistics = z / sqrt(1 + eps)
    x = torch.randn(2, 5, 4)
    a = torch.softmax((x @ head.assign.proj.weight.T) / (1 + 1e-5) ** 0.5, dim=-1)
    sigma = head.covar ** 2 + 1e-6
    out = []
    for b in range(2):
        diff = x[b][:, None, :] - head.centers[None]  # (N, K, D)
        fv1 = (a[b][..., None] * diff).sum(0) / sigma
        fv2 = (a[b][..., None] * (diff ** 2 / sigma ** 2 - 1)).sum(0)
        fv1 = torch.nn.functional.normalize(torch.nn.functional.normalize(fv1, dim=1).flatten(), dim=0)
        out.append(torch.cat([fv1, fv2.flatten() / fv2.norm()]))
    torch.testing.assert_close(head(x), torch.stack(out), atol=1e-5, rtol=1e-4)


def test_input_batch_norm_normalises_valid_clips_before_pooling():
    # official: slim.batch_norm over the frame features before pooling (every sampled frame is real there).
    # catches: no input BN, or padding entering its statistics
    import torch

    from ssl_video.models.heads import PooledClassifier
    from ssl_video.models.pooling import AvgPool

    torch.manual_seed(0)
    model = PooledClassifier(AvgPool(3), 2, hidden=4, input_bn=True, input_dim=3).train()
    x, mask = torch.randn(2, 4, 3), torch.tensor([[True, True, True, False], [True, True, False, False]])
    seen = {}
    model.pool.register_forward_pre_hook(lambda mod, args: seen.__setitem__("x", args[0]))
    model(x, mask)
    torch.testing.assert_close(seen["x"][mask], _bn_train(x[mask]))


def test_paper_preset_sets_the_published_run_and_explicit_keys_win():
    # published (WILLOW README, gated NetVLAD / NetFV runs; train.py defaults): batch 80, lr 2e-4, K 256 (NetFV 128),
    # hidden 1024, moe_l2 1e-6, 300 frames, lr decay 0.8 per 4M examples, clip 1.0, netvlad_relu=False.
    # catches: a preset value drifting from the README, a preset overriding what the user gave, the preset
    # resolved only on one path (suite settings or the CLI overrides)
    from ssl_video.evaluation.protocols import get_protocol, load_settings, settings_from_args

    protocol = get_protocol("pooling")
    published = {"batch_size": 80, "lr": 2e-4, "clusters": 256, "hidden": 1024, "moe_l2": 1e-6, "max_clips": 300,
                 "lr_decay": 0.8, "lr_decay_examples": 4_000_000, "clip_grad": 1.0, "hidden_bn": False,
                 "gating": True, "gating_bn": True, "output_gating": "official", "moe_gate_bias": False,
                 "input_bn": True, "netfv_second_order": "global", "clip_sampling": "with_replacement",
                 "multilabel_loss_form": "official", "batch_norm_numerics": "official", "l2_eps": "official",
                 "classifier_init": "official"}
    for settings in (load_settings(protocol, {"preset": "paper"}), settings_from_args(protocol, {}, ["preset=paper"])):
        assert {k: getattr(settings, k) for k in published} == published
        assert settings.head_kwargs["netfv"]["clusters"] == 128
    mine = load_settings(protocol, {"preset": "paper", "lr": 1e-3, "head_kwargs": {"netfv": {"batch_norm": True}}})
    assert mine.lr == 1e-3 and mine.head_kwargs["netfv"] == {"clusters": 128, "batch_norm": True}
    assert load_settings(protocol, {}).clusters == 64  # ours stays the default


def test_paper_preset_two_stream_netfv_uses_128_and_64_clusters():
    # official NetFVModelLF: NetFV(1024, cluster_size) for rgb and NetFV(128, cluster_size / 2) for audio.
    # catches: the per-head cluster count dropped on the two-stream path
    from ssl_video.evaluation.pooling import build_classifier
    from ssl_video.evaluation.protocols import get_protocol, load_settings

    settings = load_settings(get_protocol("pooling"), {"preset": "paper", "hidden": 8})
    model = build_classifier("netfv", 6, 5, settings, multilabel=True, audio_dim=4)
    assert model.video_pool.clusters == 128 and model.audio_pool.clusters == 64
    assert model.video_pool.second_order == "global" and model.video_norm is not None


def test_sampling_with_replacement_is_floor_of_uniform_times_length():
    # official (WILLOW model_utils.py SampleRandomFrames): index = int(U[0, 1) * num_frames), num_samples of them,
    # unordered, with replacement, also for videos shorter than num_samples.
    # catches: sorted indices, sampling without replacement, short videos kept at their own length
    from ssl_video.evaluation.pooling import clip_indices

    got = clip_indices(7, 300, np.random.default_rng(3), replacement=True)
    assert np.array_equal(got, np.floor(np.random.default_rng(3).random(300) * 7).astype(np.int64))
    assert len(got) == 300 and got.max() == 6


def test_gradient_clipping_is_per_tensor():
    # official (TF-slim create_train_op clip_gradient_norm=1.0): clip_by_norm on each variable's gradient.
    # catches: one global norm (which would also shrink the small gradient)
    import torch

    from ssl_video.evaluation.pooling import clip_each_gradient

    big, small = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    big.grad, small.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])
    clip_each_gradient([big, small], 1.0)
    torch.testing.assert_close(big.grad, torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(small.grad, torch.tensor([0.3, 0.4]))


def test_staircase_lr_decay_counts_examples(monkeypatch):
    # official (WILLOW train.py): lr = base * decay ** floor(global_step * batch_size / decay_examples).
    # catches: decay per step instead of per example count, continuous instead of staircase, decay never applied
    import torch

    from ssl_video.evaluation.pooling import build_classifier, train_classifier
    from ssl_video.evaluation.settings import PoolingSettings

    lrs = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (lrs.append(self.param_groups[0]["lr"]),
                                                                        step(self, *a, **k))[1])
    settings = PoolingSettings(epochs=2, batch_size=2, lr=0.1, lr_decay=0.5, lr_decay_examples=3, hidden=4,
                               device="cpu")
    x = [np.random.default_rng(i).standard_normal((3, 4)).astype(np.float32) for i in range(6)]
    model = build_classifier("avg", 4, 2, settings, multilabel=False)
    train_classifier(model, x, np.array([0, 1] * 3), settings, multilabel=False)
    seen = [2 * t for t in range(6)]  # examples before each of the 6 steps
    assert lrs == pytest.approx([0.1 * 0.5 ** (n // 3) for n in seen])


def test_summed_binary_cross_entropy():
    # official (WILLOW losses.py CrossEntropyLoss, alpha 0.5): -sum_c [y log p + (1 - y) log(1 - p)], mean over videos.
    # catches: the mean over classes kept (a C-times weaker loss against the L2 penalty)
    import torch

    from ssl_video.evaluation.pooling import classification_loss

    logits, y = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]]), torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    p = torch.sigmoid(logits)
    want = -(y * p.log() + (1 - y) * (1 - p).log()).sum(1).mean()
    torch.testing.assert_close(classification_loss(logits, y, True, "sum"), want)



def _slim_batch_norm(x, running_mean, running_var):
    """TF-slim batch_norm in training by hand (TF 1.x, not fused; fresh gamma 1, beta 0): normalised with the biased
    batch variance and epsilon 1e-3; moving averages with decay 0.999 of the batch mean and biased variance."""
    mean, var = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
    return (x - mean) / (var + 1e-3) ** 0.5, 0.999 * running_mean + 0.001 * mean, 0.999 * running_var + 0.001 * var


def test_official_batch_norm_numerics_are_slim_batch_norm_by_hand():
    # official: every slim.batch_norm of WILLOW frame_level_models.py (input_bn, cluster_bn, hidden1_bn, gating_bn),
    # video_level_models.py (gating_prob_bn) and LOUPE loupe.py with the defaults decay=0.999, epsilon=0.001.
    # catches: one BN left at PyTorch's numerics, eps 1e-5 kept, momentum 0.999 (TF's decay read as PyTorch's
    # momentum), the unbiased variance in the moving average, padding entering the statistics
    import torch

    from ssl_video.evaluation.pooling import build_classifier
    from ssl_video.evaluation.settings import PoolingSettings

    settings = PoolingSettings(clusters=3, hidden=6, input_bn=True, hidden_bn=True, gating_bn=True,
                               output_gating="official", batch_norm_numerics="official")
    torch.manual_seed(0)
    model = build_classifier("netvlad", 4, 5, settings, multilabel=True).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 5  # input, cluster assignment, hidden, gating, output gating
    assert all((m.eps, m.momentum) == (1e-3, 1e-3) for m in norms)
    ours = build_classifier("netvlad", 4, 5, PoolingSettings(clusters=3, hidden=6, input_bn=True), multilabel=True)
    assert all((m.eps, m.momentum) == (1e-5, 0.1) for m in ours.modules() if isinstance(m, torch.nn.BatchNorm1d))
    # small-variance channels, so that epsilon 1e-3 against 1e-5 shows; the cluster BN sees padded (B, N, K)
    # assignments logits, the hidden BN (B, H) rows
    x = 0.03 * torch.randn(2, 5, 3) + torch.tensor([0.5, -1.0, 2.0])
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    h = 0.03 * torch.randn(7, 6) + 1.0
    for norm, rows, valid, kwargs in ((model.pool.assign.norm, x, mask, {"mask": mask}), (model.head.norm, h, None, {})):
        with torch.no_grad():  # moving variance 0: the batch's share (1e-3 var) is compared to its own scale
            norm.running_mean.fill_(0.2)
            norm.running_var.zero_()
        before = norm.running_mean.clone(), norm.running_var.clone()
        out = norm(rows, **kwargs)
        want, want_mean, want_var = _slim_batch_norm(rows if valid is None else rows[valid], *before)
        torch.testing.assert_close(out if valid is None else out[valid], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(norm.running_mean, want_mean, atol=0, rtol=1e-5)
        torch.testing.assert_close(norm.running_var, want_var, atol=0, rtol=1e-4)
    assert not model.pool.assign.norm(x, mask)[~mask].any()


def _tf_l2_normalize(v, dim: int):
    """TF tf.nn.l2_normalize by hand: v * rsqrt(max(sum(v^2), 1e-12)), i.e. the norm floored at 1e-6."""
    return v / torch.maximum((v ** 2).sum(dim, keepdim=True), torch.tensor(1e-12)) ** 0.5


def test_official_l2_normalize_floors_the_norm_at_1e_minus_6():
    # official: tf.nn.l2_normalize (epsilon 1e-12 on the squared norm) for the intra and global normalisation of
    # LOUPE loupe.py / WILLOW frame_level_models.py NetVLAD, NetRVLAD, NetFV and SoftDBoW.
    # catches: F.normalize kept (a tiny vector blown up to unit length), the 1e-12 floor put on the norm instead of
    # the squared norm, the switch not reaching a head of the NetVLAD family (two streams too)
    import torch

    from ssl_video.evaluation.pooling import build_classifier
    from ssl_video.evaluation.settings import PoolingSettings
    from ssl_video.models.pooling import NetRVLAD, l2_normalize

    tiny = torch.tensor([[3e-7, 4e-7], [3.0, 4.0]])  # squared norms 2.5e-13 (< 1e-12) and 25
    torch.testing.assert_close(l2_normalize(tiny, 1, "official"), torch.tensor([[0.3, 0.4], [0.6, 0.8]]))
    torch.testing.assert_close(l2_normalize(tiny, 1), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    # NetRVLAD with 2 clusters, the second nearly never assigned: its sum stays far below 1e-6
    torch.manual_seed(0)
    head = NetRVLAD(3, clusters=2, batch_norm=False, l2_eps="official")
    with torch.no_grad():
        head.assign.proj.weight.zero_()
        head.assign.proj.bias.copy_(torch.tensor([0.0, -25.0]))
    x = torch.randn(1, 4, 3)
    a = torch.softmax(torch.tensor([0.0, -25.0]), dim=0)  # the same assignment for every clip
    v = a[:, None] * x[0].sum(0)  # (K, D)
    want = _tf_l2_normalize(_tf_l2_normalize(v, 1).flatten(), 0)
    torch.testing.assert_close(head(x)[0], want)
    assert want[3:].norm() < 1e-3  # ours would make the empty cluster's part as long as the other's
    settings = PoolingSettings(clusters=2, hidden=4, l2_eps="official")
    for name in ("netvlad", "netrvlad", "netfv", "netbow"):
        assert build_classifier(name, 3, 2, settings, multilabel=False).pool.l2_eps == "official"
        two = build_classifier(name, 3, 2, settings, multilabel=True, audio_dim=2)
        assert (two.video_pool.l2_eps, two.audio_pool.l2_eps) == ("official", "official")
    build_classifier("attention_clusters", 3, 2, settings, multilabel=False)  # no L2 switch there, still builds


def test_official_multilabel_loss_is_willow_cross_entropy_on_probabilities():
    # official (WILLOW losses.py CrossEntropyLoss, epsilon = 10e-6, alpha 0.5):
    # -sum_c [y log(p + 1e-5) + (1 - y) log(1 - p + 1e-5)], mean over videos, on the probabilities.
    # catches: the epsilon left out or 1e-6 (10e-6 read as 1e-6), the loss taken on clamped logits (no gradient for a
    # positive label at p < 1e-6)
    import torch

    from ssl_video.evaluation.pooling import classification_loss

    p = torch.tensor([[1e-8, 0.3, 0.999999], [0.9, 0.5, 2e-7]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    loss = classification_loss(p, y, True, "sum", "official")
    want = -(y * torch.log(p.detach() + 1e-5) + (1 - y) * torch.log(1 - p.detach() + 1e-5)).sum(1).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    grad = (-y / (p.detach() + 1e-5) + (1 - y) / (1 - p.detach() + 1e-5)) / 2  # d/dp, mean over 2 videos
    torch.testing.assert_close(p.grad, grad)
    assert p.grad[0, 0] < -4e4  # p = 1e-8 on a positive label is still pulled up


def test_official_loss_reaches_moe_probabilities_below_the_clamp():
    # official: the loss sees the MoE probabilities as computed, so an expert whose sigmoid is ~1e-13 on a positive
    # label gets the gradient -g s (1 - s) / (p + 1e-5) (by hand below, mean over videos).
    # catches: the probabilities taken after our [1e-6, 1 - 1e-6] clamp (zero gradient), the dummy expert counted
    import torch

    from ssl_video.evaluation.pooling import classification_loss
    from ssl_video.models.heads import _Classifier

    torch.manual_seed(0)
    block = _Classifier(4, 3, 5, gating=False, classifier="moe", experts=2, dropout=0.0, relu=False,
                        hidden_bn=False, moe_gate_bias=False)
    with torch.no_grad():
        block.classifier.experts_fc.bias.fill_(-30.0)
    z, y = torch.randn(2, 4), torch.ones(2, 3)
    h = (z @ block.fc.weight.T + block.fc.bias).detach()
    moe = block.classifier
    g = torch.softmax((h @ moe.gates.weight.T).view(2, 3, 3), dim=-1)[..., :2]
    s = torch.sigmoid(h @ moe.experts_fc.weight.T + moe.experts_fc.bias).view(2, 3, 2).detach()
    p = (g.detach() * s).sum(-1)
    out = block(z, probabilities=True)
    torch.testing.assert_close(out, p, rtol=1e-5, atol=0)
    assert p.max() < 1e-6
    classification_loss(out, y, True, "sum", "official").backward()
    want = (-(1 / (p + 1e-5))[..., None] * g.detach() * s * (1 - s)).mean(0).flatten()
    torch.testing.assert_close(moe.experts_fc.bias.grad, want, rtol=1e-4, atol=0)
    moe.experts_fc.bias.grad = None
    classification_loss(block(z), y, True, "sum").backward()  # ours: clamped, no gradient
    assert not moe.experts_fc.bias.grad.any()


def test_training_uses_the_official_loss_on_probabilities():
    # official: the training loss is CrossEntropyLoss on the model's probabilities. With every probability ~1e-13 and
    # positive labels, each positive costs -log(1e-5) = 11.5 (the clamped logits would cost -log(1e-6) = 13.8).
    # catches: the training loop still passing logits (clamped) to the loss when the official form is set
    import copy

    import torch

    from ssl_video.evaluation.pooling import build_classifier, pad_batch, train_classifier
    from ssl_video.evaluation.settings import PoolingSettings

    settings = PoolingSettings(epochs=1, batch_size=8, hidden=4, gating=False, hidden_bn=False, device="cpu",
                               multilabel_loss="sum", multilabel_loss_form="official")
    torch.manual_seed(0)
    model = build_classifier("avg", 3, 2, settings, multilabel=True)
    with torch.no_grad():
        model.head.classifier.experts_fc.bias.fill_(-30.0)
    x = [np.random.default_rng(i).standard_normal((3, 3)).astype(np.float32) for i in range(4)]
    y = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=np.float32)
    before = copy.deepcopy(model).train()
    with torch.no_grad():
        p = before(*pad_batch(x), probabilities=True)
    yt = torch.from_numpy(y)
    want = -(yt * torch.log(p + 1e-5) + (1 - yt) * torch.log(1 - p + 1e-5)).sum(1).mean()
    stats = train_classifier(model, x, y, settings, multilabel=True)  # one batch: the loss before the step
    assert stats["final_loss"] == pytest.approx(float(want), rel=1e-5)


def test_official_classifier_init_matches_willow_and_slim_defaults():
    # official: WILLOW frame_level_models.py hidden1_weights N(0, 1/sqrt(cluster_size)) (the video head's K) and
    # hidden1_biases N(0, 0.01); gating_weights_2 / LOUPE context_gating N(0, 1/sqrt(dim)); video_level_models.py
    # MoeModel: slim.fully_connected defaults (Glorot uniform, bound sqrt(6 / (fan_in + fan_out)); expert biases 0;
    # gates without bias), gating_prob_weights N(0, 1/sqrt(classes)).
    # catches: variance and std confused (1/K), the hidden std taken from the FC's fan-in or the audio head's K,
    # PyTorch's uniform(+-1/sqrt(fan_in)) left on the MoE, non-zero expert biases, the output gating std taken from
    # the hidden size
    import math

    import torch

    from ssl_video.evaluation.pooling import build_classifier
    from ssl_video.evaluation.settings import PoolingSettings

    settings = PoolingSettings(clusters=16, hidden=256, hidden_bn=False, gating_bn=True, output_gating="official",
                               moe_gate_bias=False, classifier_init="official")
    torch.manual_seed(0)
    head = build_classifier("netrvlad", 8, 60, settings, multilabel=True).head  # FC 128 -> 256, 60 classes

    def near(t, std, tol):
        return abs(t.std().item() - std) < tol * std and abs(t.mean().item()) < 3 * std / math.sqrt(t.numel())

    assert near(head.fc.weight, 1 / math.sqrt(16), 0.03)
    assert near(head.fc.bias, 0.01, 0.2)
    assert near(head.gate.fc.weight, 1 / math.sqrt(256), 0.03) and head.gate.fc.bias is None
    assert near(head.output_gate.fc.weight, 1 / math.sqrt(60), 0.08) and head.output_gate.fc.bias is None
    moe = head.classifier
    for fc, fan_out in ((moe.gates, 60 * 3), (moe.experts_fc, 60 * 2)):
        bound = math.sqrt(6 / (256 + fan_out))
        w = fc.weight.detach()
        assert 0.97 * bound < w.abs().max().item() <= bound and near(w, bound / math.sqrt(3), 0.03)
    assert moe.gates.bias is None and not moe.experts_fc.bias.any()
    two = build_classifier("netrvlad", 8, 60, settings, multilabel=True, audio_dim=4).head  # audio K 8
    assert near(two.fc.weight, 1 / math.sqrt(16), 0.03)
    ours = build_classifier("netrvlad", 8, 60, PoolingSettings(clusters=16, hidden=256), multilabel=True).head
    assert ours.classifier.experts_fc.bias.any()  # PyTorch's default stays without the switch


# ---------------------------------------------------------------------------------------------- Attention Clusters


def test_attention_clusters_official_shift_init_std_is_k_to_minus_quarter():
    # reference (PaddlePaddle attention_cluster shifting_attention.py): shift_w and shift_b ~ Normal(0,
    # sqrt(1 / sqrt(n_att))), n_att = the stream's attention units. catches: std 1/sqrt(K), only alpha drawn
    import torch

    from ssl_video.models.pooling import AttentionClusters

    torch.manual_seed(0)
    head = AttentionClusters(8, clusters=1024, shift_init="official")
    want = (1.0 / 1024 ** 0.5) ** 0.5  # 0.177
    for p in (head.alpha, head.beta):
        assert abs(p.std().item() - want) < 0.1 * want and abs(p.mean().item()) < 0.03
    ours = AttentionClusters(8, clusters=4)
    assert torch.equal(ours.alpha, torch.ones(4)) and torch.equal(ours.beta, torch.zeros(4))


def test_attention_clusters_reference_head_by_hand():
    # reference (attention_cluster.py build_model): dropout 0.5 -> fc 1024 tanh -> fc 4096 tanh -> logistic.
    # catches: ReLU instead of tanh, other widths, the dropout rate, our FC/BN/gating left in front
    import torch

    from ssl_video.models.heads import _Classifier

    torch.manual_seed(0)
    block = _Classifier(10, 3, 8, gating=True, classifier="tanh_mlp", experts=2, dropout=0.0, relu=False).eval()
    drop, fc1, _, fc2, _, fc3 = block.mlp.net
    assert drop.p == 0.5 and (fc1.out_features, fc2.out_features) == (1024, 4096)
    z = torch.randn(2, 10)
    want = torch.tanh(torch.tanh(z @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias) @ fc3.weight.T + fc3.bias
    torch.testing.assert_close(block(z), want)
    assert not hasattr(block, "fc")


# ---------------------------------------------------------------------------------------------- STiCA step


def test_audio_network_runs_once_per_view_with_two_batchnorm_updates():
    # official (GDT main_stica.py): `for i in range(len(video)): model(video_input, audio, ...)`: the audio net
    # runs for each view on the same audio, so each BN's running mean moves twice toward the batch mean mu:
    # r = (1 - m)^2 r0 + (1 - (1 - m)^2) mu (by hand below). catches: the switch ignored (one pass, one update)
    import torch

    from ssl_video.methods.stica import STiCA
    from tests.test_stica import tiny_batch, tiny_config

    for per_view, passes in ((True, 2), (False, 1)):
        torch.manual_seed(0)
        method = STiCA(tiny_config(feature_crop=False, audio_per_view=per_view)).train()
        norm = next(m for m in method.audio_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
        inputs, calls = [], []
        norm.register_forward_hook(lambda mod, args, out, seen=inputs: seen.append(args[0].detach()))
        method.audio_encoder.register_forward_hook(lambda *a, seen=calls: seen.append(1))
        r0, m = norm.running_mean.clone(), norm.momentum
        method(tiny_batch())["loss"].backward()
        assert len(calls) == passes
        mu = inputs[0].mean(dim=(0, 2, 3))
        torch.testing.assert_close(inputs[-1].mean(dim=(0, 2, 3)), mu)  # the same audio both times
        keep = (1 - m) ** passes
        torch.testing.assert_close(norm.running_mean, keep * r0 + (1 - keep) * mu)


# ---------------------------------------------------------------------------------------------- GDT colour pipeline


def _gdt_gray(x: np.ndarray) -> np.ndarray:
    g = 0.299 * x[:, 2] + 0.587 * x[:, 1] + 0.114 * x[:, 0]  # GDT: channels taken as BGR
    return np.repeat(g[:, None], 3, axis=1)


def test_official_grayscale_uses_bgr_weights_on_our_channels():
    # mutation: RGB weights (0.299 on channel 0), or the gray value not copied to every channel
    import torch

    from ssl_video.data.transforms import official_gray

    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(official_gray(torch.from_numpy(x)).numpy(), _gdt_gray(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation"])
def test_official_jitter_blends_like_gdt(kind):
    # mutations: contrast against the clip mean (GDT: each frame's mean gray value), brightness blended with
    # black in [0, 1] space instead of scaling normalised values, saturation against RGB-weighted gray
    import torch

    from ssl_video.data.transforms import official_jitter

    x = np.random.default_rng(1).normal(size=(3, 3, 4, 5)).astype(np.float32)
    alpha = 1.3
    other = {"brightness": np.zeros_like(x),
             "contrast": np.broadcast_to(_gdt_gray(x).mean(axis=(1, 2, 3), keepdims=True), x.shape),
             "saturation": _gdt_gray(x)}[kind]
    expected = x * alpha + other * (1 - alpha)
    np.testing.assert_allclose(official_jitter(torch.from_numpy(x), kind, alpha).numpy(), expected, rtol=1e-5,
                               atol=1e-5)


def test_official_blur_is_the_fixed_anisotropic_kornia_kernel():
    # mutations: a random sigma, the sigmas swapped (blur along H), zero padding instead of reflection
    import torch

    from ssl_video.data.transforms import official_blur

    x = np.random.default_rng(2).normal(size=(2, 3, 16, 20)).astype(np.float64)
    taps = np.arange(11) - 5
    ky, kx = (np.exp(-taps ** 2 / (2 * s ** 2)) for s in (0.1, 2.0))
    ky, kx = ky / ky.sum(), kx / kx.sum()
    padded = np.pad(x, ((0, 0), (0, 0), (5, 5), (5, 5)), mode="reflect")
    expected = np.zeros_like(x)
    for i in range(11):
        for j in range(11):
            expected += ky[i] * kx[j] * padded[:, :, i:i + 16, j:j + 20]
    out = official_blur(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    assert np.abs(out - x).max() > 0.1  # a real blur along W (sigma 0.1 along H leaves rows nearly alone)


def test_the_official_style_normalises_before_colour():
    # mutation: the official style jittering [0, 1] frames and normalising afterwards (ours)
    import random

    import torch

    from ssl_video.data.transforms import normalize, official_jitter, video_transform
    from ssl_video.recipe import VideoAugment

    video = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    cfg = VideoAugment(crop=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, color_jitter=1.0, brightness=0.4,
                       contrast=0.0, saturation=0.0, style="official")
    out = video_transform(video, cfg, True, random.Random(5))
    base = normalize(video, cfg.mean, cfg.std)
    alpha = float((out * base).sum() / (base * base).sum())  # brightness only: out must be base x alpha
    assert 0.6 <= alpha <= 1.4
    torch.testing.assert_close(out, base * alpha, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.permute(1, 0, 2, 3), official_jitter(base.permute(1, 0, 2, 3), "brightness", alpha),
                               rtol=1e-5, atol=1e-5)
    torchvision_style = video_transform(video, VideoAugment(**{**cfg.__dict__, "style": "torchvision"}), True,
                                        random.Random(5))
    assert not torch.allclose(torchvision_style, out, atol=1e-3)  # ours clamps to [0, 1] before normalising
