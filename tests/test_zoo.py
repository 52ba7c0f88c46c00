"""The encoder zoo: every registered encoder by name, its spec, and torchvision compatibility."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision.models.video as tv_video

import ssl_video
from ssl_video.cli import main
from ssl_video.errors import UserError
from ssl_video.models.io import torchvision_model
from ssl_video.models.registry import EncoderSpec, describe_encoder, pool_features

ENCODERS = ssl_video.list_encoders()
REQUIRED = {"r2plus1d_18", "r2plus1d_34", "r3d_18", "mc3_18", "s3d", "cost_r18", "cost_r50", "audio_resnet9",
            "audio_resnet18"}
TORCHVISION_ARCHS = ["r2plus1d_18", "r3d_18", "mc3_18", "s3d"]


def tiny(name: str) -> dict:
    """Overrides for a CPU-sized variant: width 1/8 and a small input (S3D needs 8 frames)."""
    if name.startswith("audio"):
        return {"width": 0.125, "n_mels": 32, "time_frames": 32}
    return {"width": 0.125, "frames": 8, "crop_size": 32}


def test_registry_lists_every_required_encoder():
    assert REQUIRED <= set(ENCODERS)
    assert set(ssl_video.list_encoders(modality="audio")) == {"audio_resnet9", "audio_resnet18"}


@pytest.mark.parametrize("name", ENCODERS)
def test_forward_backward_shapes_and_pooling(name):
    torch.manual_seed(0)
    model = ssl_video.create_encoder(name, **tiny(name))
    spec = model.spec
    assert isinstance(spec, EncoderSpec) and spec.name == name
    x = torch.randn(2, *spec.input_shape())
    features = model.forward_features(x)
    assert features.shape == (2, *spec.feature_map)
    assert spec.feature_dim == spec.feature_map[0]
    pooled = model(x)
    assert pooled.shape == (2, spec.feature_dim)
    pooled.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), pool_features(model.forward_features(x)))


@pytest.mark.parametrize("name", ENCODERS)
def test_feature_dim_follows_width(name):
    full = describe_encoder(name)
    small = describe_encoder(name, width=0.125)
    assert full["feature_dim"] in (512, 1024, 2048)
    assert small["feature_dim"] == full["feature_dim"] // 8
    assert small["spec"]["feature_map"][0] == small["feature_dim"]


def test_spec_carries_published_defaults():
    r2p1d = describe_encoder("r2plus1d_18")["spec"]
    assert (r2p1d["frames"], r2p1d["fps"], r2p1d["crop_size"]) == (30, 30.0, 112)  # STiCA
    assert r2p1d["feature_map"] == [512, 4, 7, 7]
    audio = describe_encoder("audio_resnet9")["spec"]
    assert (audio["sample_rate"], audio["seconds"], audio["n_mels"], audio["time_frames"]) == (24000, 1.0, 257, 99)
    assert audio["hop_seconds"] == 0.01 and audio["feature_dim"] == 512
    tsp = describe_encoder("r2plus1d_34")["spec"]
    assert (tsp["frames"], tsp["fps"], tsp["crop_size"]) == (16, 15.0, 112)


def test_spec_overrides_and_round_trip():
    model = ssl_video.create_encoder("r3d_18", width=0.125, frames=4, crop_size=48, mean=[0.5, 0.5, 0.5])
    spec = model.spec
    assert spec.input_shape() == (3, 4, 48, 48) and spec.mean == (0.5, 0.5, 0.5)
    assert spec.feature_map == (64, 1, 3, 3)  # spatial stride 16, temporal 8 (rounded up)
    assert EncoderSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    audio = ssl_video.create_encoder("audio_resnet9", width=0.125, sample_rate=16000, seconds=2.0)
    assert audio.spec.time_frames == 199  # logfbank (the default): 1 + ceil((32000 - 320) / 160)
    audio = ssl_video.create_encoder("audio_resnet9", width=0.125, sample_rate=16000, seconds=2.0, features="logmel")
    assert audio.spec.time_frames == 201  # centred STFT, 10 ms hop


@pytest.mark.parametrize("name", TORCHVISION_ARCHS + ["r2plus1d_34"])
def test_parameter_names_and_shapes_equal_torchvision(name):
    with torch.device("meta"):
        ours = ssl_video.create_encoder(name)
        theirs = torchvision_model(name)
    classifier = {"fc.weight", "fc.bias", "classifier.1.weight", "classifier.1.bias"}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if k not in classifier}
    assert ours_shapes == theirs_shapes
    theirs_params = sum(p.numel() for k, p in theirs.named_parameters() if k not in classifier)
    assert sum(p.numel() for p in ours.parameters()) == theirs_params


def test_parameter_counts_equal_torchvision_published():
    published = {
        "r2plus1d_18": tv_video.R2Plus1D_18_Weights.KINETICS400_V1.meta["num_params"],
        "r3d_18": tv_video.R3D_18_Weights.KINETICS400_V1.meta["num_params"],
        "mc3_18": tv_video.MC3_18_Weights.KINETICS400_V1.meta["num_params"],
        "s3d": tv_video.S3D_Weights.KINETICS400_V1.meta["num_params"],
    }
    classifier = {"s3d": 1024 * 400 + 400}
    for name, count in published.items():
        assert describe_encoder(name)["params"] == count - classifier.get(name, 512 * 400 + 400), name


def test_gflops_agree_with_torchvision_at_its_input():
    # torchvision publishes multiply-adds for 16 frames; the classifier adds a negligible 0.0002 G
    expected = tv_video.R2Plus1D_18_Weights.KINETICS400_V1.meta["_ops"]
    assert describe_encoder("r2plus1d_18", frames=16)["gflops"] == pytest.approx(expected, abs=0.01)
    expected = tv_video.S3D_Weights.KINETICS400_V1.meta["_ops"]
    assert describe_encoder("s3d", frames=16)["gflops"] == pytest.approx(expected, abs=0.01)


def test_timm_video_and_audio():
    torch.manual_seed(0)
    video = ssl_video.create_encoder("timm:resnet18", frames=3, crop_size=64)
    x = torch.randn(2, *video.spec.input_shape())
    assert video.spec.feature_map == (512, 3, 2, 2)
    assert video.forward_features(x).shape == (2, 512, 3, 2, 2)
    assert video(x).shape == (2, 512)
    # frame by frame: each time step of the map is the 2-D model applied to that frame alone
    video.eval()
    with torch.no_grad():
        per_frame = video.net(x[:, :, 1])[-1]
        assert torch.allclose(video.forward_features(x)[:, :, 1], per_frame, atol=1e-5)
    audio = ssl_video.create_encoder("timm:resnet18", modality="audio", n_mels=64, time_frames=96)
    assert audio.spec.modality == "audio" and audio.spec.feature_map == (512, 2, 3)
    assert audio(torch.randn(2, 1, 64, 96)).shape == (2, 512)


def test_timm_never_downloads_and_names_errors():
    with pytest.raises(UserError, match="never downloaded"):
        ssl_video.create_encoder("timm:resnet18", pretrained=True)
    with pytest.raises(UserError, match="unknown timm model"):
        ssl_video.create_encoder("timm:no_such_net")


def test_bad_names_and_options_are_user_errors():
    with pytest.raises(UserError, match="unknown encoder 'r2plus1d_99'") as info:
        ssl_video.create_encoder("r2plus1d_99")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no option 'depth'"):
        ssl_video.create_encoder("r3d_18", depth=3)
    with pytest.raises(UserError, match="audio input setting"):
        ssl_video.create_encoder("r3d_18", n_mels=64)
    with pytest.raises(UserError, match="width"):
        ssl_video.create_encoder("r3d_18", width=0)


def test_zoo_list_json(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in rows}
    assert REQUIRED <= set(by_name)
    for row in rows:
        assert {"name", "modality", "params", "feature_dim", "gflops"} <= set(row)
        assert row["params"] > 0 and row["gflops"] > 0
    assert by_name["r2plus1d_18"]["params"] == 31_300_125 and by_name["r2plus1d_18"]["feature_dim"] == 512
    assert by_name["audio_resnet9"]["modality"] == "audio"
    assert by_name["cost_r50"]["feature_dim"] == 2048


def test_zoo_list_text_and_show(capsys):
    assert main(["zoo", "list"]) == 0
    text = capsys.readouterr().out
    for name in REQUIRED:
        assert name in text
    assert "timm:resnet18" in text
    assert main(["zoo", "show", "cost_r50", "cost_variant=a", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["args"] == {"cost_variant": "a"} and info["spec"]["feature_map"] == [2048, 4, 7, 7]
    assert main(["zoo", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-video: error: unknown encoder 'nope'") and err.count("\n") == 1


def test_frame_differences_are_forward_differences_with_a_zero_last_step():
    from ssl_video.models.video import frame_differences

    x = torch.randn(2, 3, 5, 4, 4)
    out = frame_differences(x)
    assert out.shape == (2, 6, 5, 4, 4)
    assert torch.equal(out[:, :3], x)
    for t in range(4):
        assert torch.allclose(out[:, 3:, t], x[:, :, t + 1] - x[:, :, t])
    assert torch.count_nonzero(out[:, 3:, 4]) == 0
    # a gain scales the differences only (mutation: the gain ignored, or applied to the frames too)
    scaled = frame_differences(x, 2.5)
    assert torch.equal(scaled[:, :3], x) and torch.allclose(scaled[:, 3:], 2.5 * out[:, 3:])


def test_frame_diff_gain_reaches_the_stem_and_bad_values_are_refused():
    # mutation: the gain accepted but not used by forward_features
    gained = ssl_video.create_encoder("r2plus1d_18", frame_diff=3.0, **tiny("r2plus1d_18")).eval()
    seen = []
    gained.stem[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        gained.forward_features(x)
    assert torch.equal(seen[0][:, :3], x)
    assert torch.allclose(seen[0][:, 3:, :-1], 3.0 * (x[:, :, 1:] - x[:, :, :-1]))
    assert not ssl_video.create_encoder("r2plus1d_18", frame_diff=0, **tiny("r2plus1d_18")).frame_diff
    for bad in (-1.0, "yes"):
        with pytest.raises(UserError, match="frame_diff"):
            ssl_video.create_encoder("r2plus1d_18", frame_diff=bad, **tiny("r2plus1d_18"))


@pytest.mark.parametrize("name", ["r2plus1d_18", "r2plus1d_10", "r3d_18"])
def test_layer_strides_keep_a_larger_last_map(name):
    # mutation: layer_strides accepted but not passed on (the default strides leave a 1 x 2 x 2 map here)
    x = torch.randn(1, 3, 8, 32, 32)
    default = ssl_video.create_encoder(name, **tiny(name)).eval()
    wide = ssl_video.create_encoder(name, layer_strides=[1, 2, 2, 1], **tiny(name)).eval()
    with torch.no_grad():
        assert default.forward_features(x).shape[2:] == (1, 2, 2)
        assert wide.forward_features(x).shape[2:] == (2, 4, 4)
    assert wide.encoder_args["layer_strides"] == [1, 2, 2, 1]


@pytest.mark.parametrize("name", ["r2plus1d_18", "r3d_18", "mc3_18"])
def test_frame_diff_stem_sees_six_channels_and_ignores_a_static_offset_in_the_differences(name):
    encoder = ssl_video.create_encoder(name, frame_diff=True, **tiny(name)).eval()
    first_conv = next(m for m in encoder.stem.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.in_channels == 6
    assert encoder.encoder_args["frame_diff"] is True
    # zero the RGB half of the stem: the output then depends on motion only, not on a constant background
    with torch.no_grad():
        first_conv.weight[:, :3] = 0
        x = torch.randn(2, 3, 8, 32, 32)
        static = torch.randn(1, 3, 1, 32, 32)
        assert torch.allclose(encoder(x), encoder(x + static), atol=1e-5)
        assert encoder.forward_features(x).shape[1] == encoder.feature_dim
