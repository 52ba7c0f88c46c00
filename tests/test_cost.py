"""CoST: the shared-kernel view convolution, its coefficients, parameter budget and the explain plot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import ssl_video
from ssl_video.cli import main
from ssl_video.errors import UserError
from ssl_video.models.cost import CoSTConv, cost_layers, view_contributions
from ssl_video.models.io import save_encoder

TINY = {"width": 0.125, "frames": 4, "crop_size": 32}


@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize(("name", "resnet"), [("cost_r18", "resnet18"), ("cost_r50", "resnet50")])
def test_parameter_count_within_5_percent_of_2d_resnet(name, resnet, variant):
    with torch.device("meta"):
        cost = ssl_video.create_encoder(name, cost_variant=variant)
        plain = getattr(torchvision.models, resnet)(weights=None)
    cost_params = sum(p.numel() for p in cost.parameters())
    plain_params = sum(p.numel() for n, p in plain.named_parameters() if not n.startswith("fc."))
    assert abs(cost_params - plain_params) / plain_params < 0.05
    if variant == "a":
        # exactly the 2-D ResNet plus 3 coefficients per channel of each CoST layer
        extra = sum(layer.view_logits.numel() for _, layer in cost_layers(cost))
        assert cost_params == plain_params + extra


def test_cost_kernels_have_the_2d_resnet_names_and_shapes():
    with torch.device("meta"):
        cost = ssl_video.create_encoder("cost_r50", cost_variant="a")
        plain = torchvision.models.resnet50(weights=None)
    plain_shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items() if not k.startswith("fc.")}
    for key, value in cost.state_dict().items():
        if key.endswith("view_logits"):
            continue
        shape = tuple(value.shape)
        if len(shape) == 5:  # 1 x k x k 3-D convs are 2-D kernels with a unit time axis
            assert shape[2] == 1
            shape = shape[:2] + shape[3:]
        assert plain_shapes.pop(key) == shape, key
    assert not plain_shapes


def test_views_are_the_shared_kernel_on_three_planes():
    torch.manual_seed(0)
    layer = CoSTConv(3, 4, variant="a")
    x = torch.randn(2, 3, 5, 6, 7)  # N C T H W
    hw, tw, th = layer.view_outputs(x)
    w = layer.weight
    # H-W: a 2-D conv on every frame
    frames = x.permute(0, 2, 1, 3, 4).reshape(10, 3, 6, 7)
    expected = F.conv2d(frames, w, padding=1).reshape(2, 5, 4, 6, 7).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(hw, expected)
    # T-W: the same kernel on every (T, W) plane, one per row H
    planes = x.permute(0, 3, 1, 2, 4).reshape(12, 3, 5, 7)
    expected = F.conv2d(planes, w, padding=1).reshape(2, 6, 4, 5, 7).permute(0, 2, 3, 1, 4)
    torch.testing.assert_close(tw, expected)
    # T-H: the same kernel on every (T, H) plane, one per column W
    planes = x.permute(0, 4, 1, 2, 3).reshape(14, 3, 5, 6)
    expected = F.conv2d(planes, w, padding=1).reshape(2, 7, 4, 5, 6).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(th, expected)


def test_coefficients_weight_the_views():
    torch.manual_seed(0)
    layer = CoSTConv(3, 4, variant="a")
    x = torch.randn(1, 3, 4, 5, 5)
    with torch.no_grad():
        layer.view_logits.zero_()
        layer.view_logits[:, 1] = 50.0  # all weight on T-W
        torch.testing.assert_close(layer(x), layer.view_outputs(x)[1])
        layer.view_logits.zero_()
        hw, tw, th = layer.view_outputs(x)
        torch.testing.assert_close(layer(x), (hw + tw + th) / 3)


@pytest.mark.parametrize("name", ["cost_r18", "cost_r50"])
def test_view_coefficients_sum_to_one(name):
    torch.manual_seed(0)
    free = ssl_video.create_encoder(name, cost_variant="a", **TINY)
    with torch.no_grad():
        for _, layer in cost_layers(free):
            layer.view_logits.normal_()
    shares = view_contributions(free)
    assert len(shares) == len(cost_layers(free)) > 0
    for share in shares.values():
        assert share.shape == (3,) and torch.all(share > 0)
        assert float(share.sum()) == pytest.approx(1.0, abs=1e-6)

    predicted = ssl_video.create_encoder(name, cost_variant="b", **TINY)
    clips = torch.randn(2, *predicted.spec.input_shape())
    predicted.train()
    shares = view_contributions(predicted, clips)
    assert predicted.training  # mode restored
    for share in shares.values():
        assert float(share.sum()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UserError, match="depend on the input"):
        view_contributions(predicted)


def test_view_contributions_needs_cost_layers():
    with pytest.raises(UserError, match="no CoST layers"):
        view_contributions(ssl_video.create_encoder("r3d_18", **TINY))


def test_bad_variant_is_a_user_error():
    with pytest.raises(UserError, match="cost_variant"):
        ssl_video.create_encoder("cost_r18", cost_variant="c", **TINY)


@pytest.mark.parametrize("variant", ["a", "b"])
def test_zoo_explain_draws_the_plot(tmp_path, capsys, variant):
    encoder = ssl_video.create_encoder("cost_r18", cost_variant=variant, **TINY)
    save_encoder(encoder, tmp_path / "enc")
    out = tmp_path / "views.png"
    assert main(["zoo", "explain", str(tmp_path / "enc"), "--out", str(out)]) == 0
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "H-W" in text and "layer1.0.conv1" in text


def test_zoo_explain_rejects_other_encoders(tmp_path, capsys):
    save_encoder(ssl_video.create_encoder("r3d_18", **TINY), tmp_path / "enc")
    assert main(["zoo", "explain", str(tmp_path / "enc"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no CoST layers" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- official CoST-ResNet


def _pattern(encoder) -> tuple[tuple[int, ...], ...]:
    """1 where a block's 3x3 conv is a CoST layer, per stage (read from the built model)."""
    def has_cost(block):
        return int(isinstance(getattr(block, "conv2" if hasattr(block, "conv3") else "conv1"), CoSTConv))
    return tuple(tuple(has_cost(block) for block in getattr(encoder, f"layer{i}")) for i in range(1, 5))


def test_block_patterns_are_the_official_inflate_tables():
    # hikvision-research/cost configs/_base_/models/i3d_r50_8f.py (used by configs/cost/cost{a,b}_r50_*.py):
    # inflate=((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (1, 0, 1)); costb_r101_8f.py: layer3 alternates
    # 1, 0, ... over 23 blocks starting and ending with 1, layer4 (0, 1, 0); MMAction2's I3D-R50 (block_pattern
    # "i3d"): ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)). Tables copied from the configs by hand.
    # catches: the R50 default back to the I3D pattern, the R101 layer4 given R50's (1, 0, 1), a shifted layer3
    with torch.device("meta"):
        r50 = ssl_video.create_encoder("cost_r50", cost_variant="a")
        i3d = ssl_video.create_encoder("cost_r50", cost_variant="a", block_pattern="i3d")
        r101 = ssl_video.create_encoder("cost_r101", cost_variant="b")
    assert _pattern(r50) == ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (1, 0, 1))
    assert len(cost_layers(r50)) == 8
    assert _pattern(i3d) == ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
    assert _pattern(r101) == ((0, 1, 0), (1, 0, 1, 0),
                              (1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1), (0, 1, 0))
    assert len(cost_layers(r101)) == 16


@pytest.mark.parametrize("name", ["cost_r18", "cost_r50", "cost_r101"])
def test_cost_a_starts_at_the_official_coefficients(name):
    # official (cost/models/common/conv_cost.py CoSTa.init_weights): alpha[0] = 0.7, alpha[1:] = -0.7, softmax over
    # the views: e^0.7 / (e^0.7 + 2 e^-0.7) = 0.6698 for H-W, 0.1651 for T-W and T-H, every channel, every layer.
    # catches: zero logits (1/3 each), the favoured view put on T-W, the ResNet initialiser overwriting them
    import math

    hw = math.exp(0.7) / (math.exp(0.7) + 2 * math.exp(-0.7))
    want = torch.tensor([hw, (1 - hw) / 2, (1 - hw) / 2])
    encoder = ssl_video.create_encoder(name, cost_variant="a", width=0.125)
    for _, layer in cost_layers(encoder):
        shares = torch.softmax(layer.view_logits.detach(), dim=-1)
        torch.testing.assert_close(shares, want.expand_as(shares), atol=1e-6, rtol=0)
    assert abs(hw - 0.6698) < 1e-4


@pytest.mark.parametrize("frames", [8, 5])
def test_temporal_pool_after_layer1_is_max_over_frame_pairs(frames):
    # MMAction2 ResNet3d (open-mmlab/mmaction2 mmaction/models/backbones/resnet3d.py): pool2 =
    # MaxPool3d((2, 1, 1), stride (2, 1, 1)), no padding, after layer1: frame t of layer2's input is the max of
    # frames 2t and 2t + 1 of layer1's output (by hand below); an odd last frame is dropped (5 -> 2).
    # catches: a (3, 1, 1) kernel with padding 1 (5 -> 3 frames, other maxima), the pool left out or after layer2
    torch.manual_seed(0)
    encoder = ssl_video.create_encoder("cost_r50", cost_variant="a", width=0.125).eval()
    seen = {}
    encoder.layer1.register_forward_hook(lambda m, a, out: seen.__setitem__("layer1", out))
    encoder.layer2.register_forward_pre_hook(lambda m, a: seen.__setitem__("layer2", a[0]))
    with torch.no_grad():
        out = encoder.forward_features(torch.randn(2, 3, frames, 32, 32))
    y = seen["layer1"]
    pairs = frames // 2
    by_hand = torch.stack([torch.maximum(y[:, :, 2 * t], y[:, :, 2 * t + 1]) for t in range(pairs)], dim=2)
    assert torch.equal(seen["layer2"], by_hand)
    assert out.shape[2] == pairs  # no other temporal stride
