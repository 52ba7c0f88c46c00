"""STiCA: Feature Crop, crop pooling, projection head, and the method's forward/backward on tiny encoders."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from torch import nn

from ssl_video.errors import ConfigError
from ssl_video.losses import cross_modal_nce, info_nce
from ssl_video.methods.stica import STiCA, crop_boxes, feature_crops
from ssl_video.models.heads import ProjectionHead
from ssl_video.models.pooling import CropPooling
from ssl_video.recipe.methods import CROP_GROUPS, FeatureCropConfig, PoolingConfig, StiCAConfig, window_cells
from tests.factories import TINY_AUDIO, TINY_VIDEO

# ----------------------------------------------------------------------------------------------------
# Feature Crop


def test_published_windows_on_the_published_grids():
    crops = FeatureCropConfig()
    assert (window_cells(crops.spatial_large_window, 7), window_cells(crops.spatial_small_window, 7)) == (6, 4)
    assert (window_cells(crops.temporal_large_window, 4), window_cells(crops.temporal_small_window, 4)) == (3, 2)
    assert (window_cells(crops.temporal_large_window, 8), window_cells(crops.temporal_small_window, 8)) == (6, 4)
    assert window_cells(6, 7) == 6 and window_cells(6, 2) == 2  # cell counts are capped by the grid
    assert window_cells(0.5, 1) == 1  # at least one cell


@pytest.mark.parametrize("make_rng", [lambda: random.Random(3), lambda: torch.Generator().manual_seed(3)])
def test_feature_crops_equal_slicing_by_hand(make_rng):
    fmap = torch.randn(2, 5, 4, 7, 7, requires_grad=True)
    crops = FeatureCropConfig(spatial_large=2, spatial_small=3, temporal_large=2, temporal_small=2)
    boxes = crop_boxes((4, 7, 7), crops, make_rng())
    got = feature_crops(fmap, crops, make_rng())
    assert set(got) == set(CROP_GROUPS)
    expected_shapes = {"spatial_large": (4, 6, 6), "spatial_small": (4, 4, 4),
                       "temporal_large": (3, 7, 7), "temporal_small": (2, 7, 7)}
    for group in CROP_GROUPS:
        assert len(got[group]) == getattr(crops, group)
        for box, crop in zip(boxes[group], got[group]):
            t0, t1, h0, h1, w0, w1 = box
            by_hand = fmap.detach()[:, :, t0:t1, h0:h1, w0:w1]
            assert tuple(crop.shape[2:]) == expected_shapes[group]
            assert torch.equal(crop.detach(), by_hand)
            assert crop.data_ptr() == fmap[:, :, t0:, h0:, w0:].data_ptr()  # a view, not a copy
    # gradients flow back into exactly the cropped cells
    box = boxes["spatial_small"][0]
    got["spatial_small"][0].sum().backward()
    mask = torch.zeros(4, 7, 7)
    mask[box.t0:box.t1, box.h0:box.h1, box.w0:box.w1] = 1
    assert torch.equal(fmap.grad, mask.expand_as(fmap))


@pytest.mark.parametrize("make_rng", [lambda: random.Random(0), lambda: torch.Generator().manual_seed(0)])
def test_crop_offsets_cover_every_position(make_rng):
    # regression: an exclusive upper bound pinned 6x6 crops on the 7x7 grid to (0, 0)
    rng = make_rng()
    crops = FeatureCropConfig(spatial_large=2, spatial_small=2, temporal_large=2, temporal_small=2)
    seen = {group: set() for group in CROP_GROUPS}
    for _ in range(300):
        for group, boxes in crop_boxes((4, 7, 7), crops, rng).items():
            for box in boxes:
                assert 0 <= box.t0 < box.t1 <= 4 and 0 <= box.h0 < box.h1 <= 7 and 0 <= box.w0 < box.w1 <= 7
                seen[group].add((box.t0, box.h0, box.w0))
    assert seen["spatial_large"] == {(0, h, w) for h in range(2) for w in range(2)}
    assert seen["spatial_small"] == {(0, h, w) for h in range(4) for w in range(4)}
    assert seen["temporal_large"] == {(t, 0, 0) for t in range(2)}
    assert seen["temporal_small"] == {(t, 0, 0) for t in range(3)}


@pytest.mark.parametrize("grid", [(4, 7, 7), (8, 7, 7)])
def test_official_offsets_are_numpy_randint_with_its_exclusive_bound(grid):
    # official main_stica.py get_fm_crop: xmin = np.random.randint(0, 7 - window), tmin =
    # np.random.randint(0, duration - window): numpy's high is exclusive. The positions it can reach, by hand:
    # spatial 6x6 -> {0}, 4x4 -> {0, 1, 2}; temporal 3 of 4 -> {0}, 2 of 4 -> {0, 1}; 6 of 8 -> {0, 1}, 4 of 8 ->
    # {0, 1, 2, 3}. Catches: the official mode falling back to the inclusive bound (6x6 crops would reach 1).
    t = grid[0]
    expected = {"spatial_large": {(0, h, w) for h in range(1) for w in range(1)},
                "spatial_small": {(0, h, w) for h in range(3) for w in range(3)},
                "temporal_large": {(s, 0, 0) for s in range(t - (3 if t == 4 else 6))},
                "temporal_small": {(s, 0, 0) for s in range(t - (2 if t == 4 else 4))}}
    crops = FeatureCropConfig(spatial_large=2, spatial_small=2, temporal_large=2, temporal_small=2,
                              offsets="official")
    rng = random.Random(0)
    seen = {group: set() for group in CROP_GROUPS}
    for _ in range(300):
        for group, boxes in crop_boxes(grid, crops, rng).items():
            seen[group].update((box.t0, box.h0, box.w0) for box in boxes)
    assert seen == expected
    # a window filling its axis: numpy would raise on randint(0, 0); the official mode puts it at 0
    full = FeatureCropConfig(spatial_large=1, spatial_small=0, temporal_large=0, temporal_small=0,
                             spatial_large_window=7, offsets="official")
    assert crop_boxes((4, 7, 7), full, rng)["spatial_large"][0][2:] == (0, 7, 0, 7)


def test_crop_config_is_checked():
    with pytest.raises(ConfigError, match="spatial_small"):
        FeatureCropConfig(spatial_small=-1)
    with pytest.raises(ConfigError, match="window"):
        FeatureCropConfig(spatial_large_window=1.5)
    with pytest.raises(ConfigError, match="window"):
        FeatureCropConfig(temporal_small_window=0)
    with pytest.raises(ConfigError, match="pair_every_large"):
        FeatureCropConfig(spatial_large=3)
    FeatureCropConfig(spatial_large=3, pair_every_large=True)
    with pytest.raises(ConfigError, match="nothing to learn"):
        StiCAConfig(av_weight=0.0, feature_crop=False)
    with pytest.raises(ConfigError, match="layers"):
        PoolingConfig(layers=-1)


# ----------------------------------------------------------------------------------------------------
# crop pooling and the projection head


def pooling(**kwargs) -> CropPooling:
    torch.manual_seed(0)
    pool = CropPooling(8, layers=2, heads=2, **kwargs).eval()
    with torch.no_grad():  # larger positional embeddings than at init, so order effects are plain to see
        for table in (pool.pos_t, pool.pos_h, pool.pos_w):
            if table is not None:
                table.normal_()
    return pool


def close(a, b):
    return torch.allclose(a, b, atol=1e-5)


def test_time_tokens_without_positions_are_permutation_equivariant():
    pool = pooling(tokens="time")
    x = torch.randn(3, 8, 5, 2, 2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    tokens = pool.encode_tokens(x)
    assert close(pool.encode_tokens(x[:, :, perm]), tokens[:, perm])
    # the output is token 0: it follows whichever step is first, and is invariant to reordering the rest
    assert close(pool(x), tokens[:, 0])
    assert close(pool(x[:, :, perm]), tokens[:, 3])
    assert close(pool(x[:, :, torch.tensor([0, 4, 2, 3, 1])]), pool(x))
    assert not close(pool(x[:, :, perm]), pool(x))


def test_positional_embeddings_make_the_pooling_order_aware():
    pool = pooling(tokens="time", positional=True)
    x = torch.randn(3, 8, 5, 2, 2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert not close(pool.encode_tokens(x[:, :, perm]), pool.encode_tokens(x)[:, perm])
    assert not close(pool(x[:, :, torch.tensor([0, 4, 2, 3, 1])]), pool(x))


def test_class_token_without_positions_pools_a_set():
    pool = pooling(tokens="time", class_token=True)
    x = torch.randn(3, 8, 5, 2, 2)
    assert close(pool(x[:, :, torch.tensor([3, 0, 4, 1, 2])]), pool(x))
    with_pos = pooling(tokens="time", class_token=True, positional=True)
    assert not close(with_pos(x[:, :, torch.tensor([3, 0, 4, 1, 2])]), with_pos(x))


def test_time_tokens_average_space_so_any_spatial_shuffle_is_invisible():
    pool = pooling(tokens="time", positional=True)
    x = torch.randn(2, 8, 3, 3, 3)
    shuffled = x.flatten(3)[..., torch.randperm(9)].reshape_as(x)
    assert close(pool(shuffled), pool(x))


def test_spacetime_tokens():
    x = torch.randn(2, 8, 2, 3, 3)
    plain = pooling(tokens="spacetime", class_token=True)
    assert close(plain(x.flip(-1)), plain(x))  # a set of cells: flipping the crop changes nothing
    positioned = pooling(tokens="spacetime", class_token=True, positional=True)
    assert not close(positioned(x.flip(-1)), positioned(x))
    assert plain.token_sequence(x).shape == (2, 1 + 2 * 3 * 3, 8)


def test_zero_layers_is_average_pooling_and_width_projects():
    x = torch.randn(2, 8, 3, 2, 2)
    assert close(CropPooling(8, layers=0)(x), x.mean(dim=(2, 3, 4)))
    wide = CropPooling(8, layers=1, heads=4, width=16).eval()
    assert wide(x).shape == (2, 16) and wide.output_dim == 16


def test_projection_head_is_the_published_mlp():
    head = ProjectionHead(512, 512, 256, dropout=0.3)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert head.net[0].p == 0.3 and head.net[4].p == 0.3
    assert head.net[1].bias is None and head.net[5].bias is not None
    z = head(torch.randn(4, 512))
    assert z.shape == (4, 256) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# the method on tiny encoders


def tiny_config(**kwargs) -> StiCAConfig:
    values = dict(video_encoder_args=TINY_VIDEO, audio_encoder_args=TINY_AUDIO, embed_dim=16,
                  pooling=PoolingConfig(layers=1, heads=4))
    values.update(kwargs)
    return StiCAConfig(**values)


def tiny_batch(b=4, seed=0, has_audio=None):
    g = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(b, 2, 3, 4, 32, 32, generator=g),
        "audio": torch.randn(b, 1, 16, 32, generator=g),
        "has_audio": torch.ones(b, dtype=torch.bool) if has_audio is None else torch.tensor(has_audio),
    }


def test_forward_backward_is_finite_and_trains_both_encoders():
    torch.manual_seed(0)
    method = STiCA(tiny_config())
    out = method(tiny_batch(has_audio=[True, False, True, True]))
    assert {"loss", "loss_av", "loss_crop", "crop_spatial_ll", "crop_spatial_sl", "crop_temporal_ll",
            "crop_temporal_sl", "audio_fraction"} <= set(out)
    assert all(math.isfinite(float(v.detach())) for v in out.values())
    assert torch.allclose(out["loss"].detach(), 0.5 * out["loss_av"] + 0.5 * out["loss_crop"])
    assert out["audio_fraction"].item() == 0.75
    out["loss"].backward()
    for role in ("video_encoder", "audio_encoder"):
        grads = [p.grad for p in getattr(method, role).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("counts", [(1, 0, 0, 0), (2, 4, 2, 1), (2, 8, 2, 4)])
def test_one_backbone_pass_per_view_whatever_the_number_of_crops(counts):
    crops = FeatureCropConfig(**dict(zip(CROP_GROUPS, counts)), pair_every_large=True)
    method = STiCA(tiny_config(crops=crops))
    calls = {"video": 0, "audio": 0}
    method.video_encoder.stem.register_forward_hook(lambda *_: calls.__setitem__("video", calls["video"] + 1))
    method.audio_encoder.conv1.register_forward_hook(lambda *_: calls.__setitem__("audio", calls["audio"] + 1))
    method(tiny_batch())["loss"].backward()
    assert calls == {"video": 2, "audio": 1}


def test_clips_without_audio_do_not_touch_the_cross_modal_gradient():
    torch.manual_seed(0)
    method = STiCA(tiny_config(feature_crop=False)).eval()  # eval: no batch statistics couple the clips
    batch = tiny_batch(has_audio=[True, False, True, False])
    batch["video"].requires_grad_(True)
    batch["audio"].requires_grad_(True)
    out = method(batch)
    out["loss"].backward()
    assert torch.all(batch["video"].grad[[1, 3]] == 0) and torch.all(batch["audio"].grad[[1, 3]] == 0)
    assert batch["video"].grad[[0, 2]].abs().sum() > 0 and batch["audio"].grad[[0, 2]].abs().sum() > 0
    params = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    # replacing what the audio-less clips hold changes neither the loss nor any parameter gradient
    other = tiny_batch(seed=9)
    changed = {key: value.detach().clone() for key, value in batch.items()}
    for key in ("video", "audio"):
        changed[key][[1, 3]] = other[key][[1, 3]]
    method.zero_grad()
    again = method(changed)
    again["loss"].backward()
    assert torch.allclose(again["loss"], out["loss"], atol=1e-6)
    for name, grad in params.items():
        assert torch.allclose(dict(method.named_parameters())[name].grad, grad, atol=1e-6), name


def test_losses_follow_the_published_pairing():
    torch.manual_seed(0)
    crops = FeatureCropConfig(spatial_large=2, spatial_small=3, temporal_large=2, temporal_small=1)
    method = STiCA(tiny_config(crops=crops, video_encoder_args={**TINY_VIDEO, "frames": 16, "crop_size": 48}),
                   seed=5).eval()
    batch = tiny_batch(has_audio=[True, True, False, True])
    batch["video"] = torch.randn(4, 2, 3, 16, 48, 48)
    out = method(batch)
    with torch.no_grad():
        maps = [method.video_features(batch["video"][:, v]) for v in range(2)]
        assert tuple(maps[0].shape[2:]) == (2, 3, 3)
        audio = method.embed_audio(batch["audio"])
        av = 0.5 * sum(cross_modal_nce(method.embed_map(m), audio, 0.1, batch["has_audio"]) for m in maps)
        rng = random.Random("5:0")  # eval mode: the step counter stays at 0
        boxes = [crop_boxes(tuple(m.shape[2:]), crops, rng) for m in maps]

        def emb(view, group, i):
            return method.embed_map(boxes[view][group][i].slice(maps[view]))

        pairs = []
        for kind in ("spatial", "temporal"):
            a, b = emb(0, f"{kind}_large", 1), emb(1, f"{kind}_large", 1)
            pairs.append(0.5 * (info_nce(a, b, 0.5) + info_nce(b, a, 0.5)))
            for i in range(2):
                for j in range(getattr(crops, f"{kind}_small")):
                    pairs.append(info_nce(emb(1, f"{kind}_small", j), emb(0, f"{kind}_large", i), 0.5))
    assert len(pairs) == 2 + 2 * 3 + 2 * 1
    assert torch.allclose(out["loss_av"], av, atol=1e-5)
    assert torch.allclose(out["loss_crop"], torch.stack(pairs).mean(), atol=1e-5)


def test_crop_offsets_follow_the_step_handed_in():
    a = STiCA(tiny_config())
    draws = []
    for step in range(3):
        a.set_step(step)
        draws.append(a.draw_crop_boxes([(1, 7, 7)]))
    assert draws[0] != draws[1] != draws[2]
    assert a.draw_crop_boxes([(1, 7, 7)]) == draws[2]  # micro-batches of one step share the offsets
    b = STiCA(tiny_config())  # another process (or a resumed run) at the same step draws the same offsets
    b.set_step(1)
    assert b.draw_crop_boxes([(1, 7, 7)]) == draws[1]
    assert "crop_step" not in a.state_dict()  # nothing to save: the step is all it takes


def test_method_contract():
    method = STiCA(tiny_config())
    encoders = method.encoders()
    assert encoders["video"] == {"name": "r2plus1d_18", "args": TINY_VIDEO, "prefix": "video_encoder."}
    assert encoders["audio"]["name"] == "audio_resnet9" and encoders["audio"]["prefix"] == "audio_encoder."
    state = method.state_dict()
    for role, info in encoders.items():
        keys = [k for k in state if k.startswith(info["prefix"])]
        own = getattr(method, f"{role}_encoder").state_dict()
        assert sorted(k[len(info["prefix"]):] for k in keys) == sorted(own)
    groups = method.parameter_groups()
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in method.parameters()) and len(set(grouped)) == len(grouped)
    with pytest.raises(ValueError, match="two views"):
        method({"video": torch.randn(2, 3, 4, 32, 32), "audio": torch.randn(2, 1, 16, 32)})


def test_builder_makes_a_two_view_dataset_and_a_working_method(tmp_path):
    from ssl_video.data.clip_dataset import collate_clips
    from ssl_video.data.synth import generate_synthetic_dataset
    from ssl_video.methods import build_method
    from ssl_video.recipe import AudioFeatures, ClipConfig, DataConfig, Recipe, VideoAugment

    generate_synthetic_dataset(tmp_path, classes=2, videos_per_class=3, seconds=1.0, fps=8.0, size=(32, 32),
                               sample_rate=8000, no_audio_fraction=0.5, progress=False)
    clip = ClipConfig(frames=4, fps=8.0, resize=32, video=VideoAugment(crop=32),
                      audio=AudioFeatures(sample_rate=8000, n_mels=16, n_fft=256))
    stica = dataclasses.replace(tiny_config(), video_encoder_args={"width": 0.0625},
                                audio_encoder_args={"width": 0.0625})
    recipe = Recipe(seed=1, method="stica", stica=stica,
                    data=DataConfig(dataset="synthetic", root=str(tmp_path), subset=None, clip=clip))
    method, dataset = build_method(recipe)
    assert len(dataset) == 6 and dataset.cfg.views == 2 and dataset.train and dataset.seed == 1
    batch = collate_clips([dataset[i] for i in range(4)])
    assert batch["video"].shape == (4, 2, 3, 4, 32, 32) and batch["audio"].shape[:3] == (4, 1, 16)
    spec = method.video_encoder.spec
    assert (spec.frames, spec.crop_size) == (4, 32) and method.audio_encoder.spec.n_mels == 16
    out = method(batch)
    out["loss"].backward()
    assert math.isfinite(out["loss"].item())


def test_undetached_keys_give_the_same_loss_and_the_gradient_of_both_sides():
    """``detach_keys: false``: same loss value; gradients equal those of a plain two-sided NCE."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    published = STiCA(tiny_config(feature_crop=False)).eval()
    both = STiCA(tiny_config(feature_crop=False, detach_keys=False)).eval()
    both.load_state_dict(published.state_dict())
    batch = tiny_batch()
    a, b = published(batch)["loss"], both(batch)["loss"]
    assert torch.allclose(a, b)
    b.backward()
    got = {n: p.grad.clone() for n, p in both.named_parameters() if p.grad is not None}

    both.zero_grad()
    v = [both.embed_map(both.video_features(batch["video"][:, view])) for view in range(2)]
    s = both.embed_audio(batch["audio"])
    target = torch.arange(4)

    def two_sided(x, y):
        logits = x @ y.t() / both.cfg.cross_temperature
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))

    reference = both.cfg.av_weight * 0.5 * (two_sided(v[0], s) + two_sided(v[1], s))
    assert torch.allclose(reference, b)
    reference.backward()
    for name, grad in got.items():
        assert torch.allclose(dict(both.named_parameters())[name].grad, grad, atol=1e-6), name
    assert any(n.startswith("audio_encoder") for n in got) and any(n.startswith("video_encoder") for n in got)
