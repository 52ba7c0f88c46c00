"""Export from training checkpoints (native and torchvision formats) and strict loading back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ssl_video
from ssl_video.cli import main
from ssl_video.errors import UserError
from ssl_video.export import export_encoder
from ssl_video.models.io import load_encoder, save_encoder, torchvision_model

ENCODERS = ssl_video.list_encoders()
CLASSIFIER = {"s3d": {"classifier.1.weight", "classifier.1.bias"}}


def tiny(name: str) -> dict:
    if name.startswith("audio"):
        return {"width": 0.125, "n_mels": 32, "time_frames": 32}
    return {"width": 0.125, "frames": 8, "crop_size": 32}


class FakeMethod(nn.Module):
    """Stands in for a pretraining method: encoders under ``<role>_encoder`` plus a head."""

    def __init__(self, encoders: dict[str, nn.Module]):
        super().__init__()
        for role, encoder in encoders.items():
            self.add_module(f"{role}_encoder", encoder)
        self.head = nn.Linear(4, 4)


def warmed(name: str, seed: int = 0, **overrides) -> nn.Module:
    """An encoder whose BatchNorm statistics moved away from their initial values."""
    torch.manual_seed(seed)
    encoder = ssl_video.create_encoder(name, **overrides)
    with torch.no_grad():
        encoder.train()(torch.randn(2, *encoder.spec.input_shape()))
    return encoder.eval()


def write_checkpoint(path: Path, encoders: dict[str, nn.Module], key_prefix: str = "", **extra) -> Path:
    method = FakeMethod(encoders)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": {key_prefix + k: v for k, v in method.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": []},
        "encoders": {
            role: {"name": enc.encoder_name, "args": enc.encoder_args, "prefix": f"{role}_encoder."}
            for role, enc in encoders.items()
        },
        "step": 1234,
        "config": {"optim": {"lr": 0.64}, "data": {"frames": 8}},
        "recipe": "recipes/tiny.yaml",
        "git_revision": "0123abc",
        "version": "0.1.0",
        **extra,
    }
    torch.save(checkpoint, path)
    return path


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("name", ENCODERS + ["timm:resnet18"])
def test_export_load_round_trip_is_bit_identical(tmp_path, name):
    overrides = tiny(name) if not name.startswith("timm:") else {"frames": 2, "crop_size": 32}
    encoder = warmed(name, **overrides)
    role = encoder.spec.modality
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", {role: encoder})
    [out] = export_encoder(ckpt, tmp_path / "export", encoder=role)
    loaded = load_encoder(out)
    assert not loaded.training
    assert loaded.spec == encoder.spec
    x = torch.randn(2, *encoder.spec.input_shape())
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))
        assert torch.equal(loaded.forward_features(x), encoder.forward_features(x))
    # plain safetensors: the backbone only, no prefix
    assert set(load_file(str(out / "model.safetensors"))) == set(encoder.state_dict())


def test_export_run_dir_all_roles_with_provenance_and_results(tmp_path, capsys):
    video = warmed("r2plus1d_18", **tiny("r2plus1d_18"))
    audio = warmed("audio_resnet9", **tiny("audio_resnet9"))
    run = tmp_path / "run"
    write_checkpoint(run / "checkpoints" / "last.pt", {"video": video, "audio": audio},
                     results={"train_loss": 1.5})
    (run / "results").mkdir()
    (run / "results" / "linear_ucf101.json").write_text(json.dumps({"top1": 0.42}))
    out = tmp_path / "enc"
    assert main(["export", str(run), "--out", str(out), "--encoder", "all"]) == 0
    printed = capsys.readouterr().out
    assert "load_encoder" in printed
    for role, encoder in (("video", video), ("audio", audio)):
        config = json.loads((out / role / "config.json").read_text())
        assert config["architecture"] == encoder.encoder_name and config["role"] == role
        assert config["args"] == encoder.encoder_args
        # spec.source describes the exported weights (the run), then the zoo's defaults
        assert {**config["spec"], "source": ""} == {**encoder.spec.to_dict(), "source": ""}
        assert config["spec"]["source"].startswith("training, recipe recipes/tiny.yaml, step 1234. Zoo defaults")
        assert config["provenance"]["step"] == 1234
        assert config["provenance"]["recipe"] == "recipes/tiny.yaml"
        assert config["provenance"]["git_revision"] == "0123abc"
        assert config["provenance"]["version"] == "0.1.0"
        assert config["results"] == {"train_loss": 1.5, "linear_ucf101": {"top1": 0.42}}
        assert config["training_config"]["optim"]["lr"] == 0.64
        keys = load_file(str(out / role / "model.safetensors"))
        assert not any(k.startswith(("head", f"{role}_encoder")) for k in keys)
        x = torch.randn(1, *encoder.spec.input_shape())
        with torch.no_grad():
            assert torch.equal(load_encoder(out / role)(x), encoder(x))


def test_default_role_and_wrapped_keys(tmp_path):
    video = warmed("r3d_18", **tiny("r3d_18"))
    audio = warmed("audio_resnet9", **tiny("audio_resnet9"))
    # keys saved from a DistributedDataParallel-wrapped module still export
    ckpt = write_checkpoint(tmp_path / "c.pt", {"video": video, "audio": audio}, key_prefix="module.")
    [out] = export_encoder(ckpt, tmp_path / "out")
    assert out == tmp_path / "out"
    assert json.loads((out / "config.json").read_text())["architecture"] == "r3d_18"
    with pytest.raises(UserError, match="has no audio encoder"):
        export_encoder(write_checkpoint(tmp_path / "v.pt", {"video": video}), tmp_path / "o2", encoder="audio")


@pytest.mark.parametrize("name", ["r2plus1d_18", "r3d_18", "mc3_18", "s3d"])
def test_torchvision_format_loads_into_torchvision(tmp_path, name):
    encoder = warmed(name, frames=8, crop_size=32)
    ckpt = write_checkpoint(tmp_path / "c.pt", {"video": encoder})
    [out] = export_encoder(ckpt, tmp_path / "tv", format="torchvision")
    config = json.loads((out / "config.json").read_text())
    state = torch.load(out / config["weights"], map_location="cpu", weights_only=True)
    reference = torchvision_model(name).eval()
    missing, unexpected = reference.load_state_dict(state, strict=False)
    classifier = CLASSIFIER.get(name, {"fc.weight", "fc.bias"})
    assert set(missing) == classifier == set(config["torchvision"]["missing_keys"])
    assert not unexpected
    x = torch.randn(1, *encoder.spec.input_shape())
    with torch.no_grad():
        if name == "s3d":
            theirs = reference.features(x)
        else:
            theirs = reference.stem(x)
            for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
                theirs = layer(theirs)
        assert torch.equal(encoder.forward_features(x), theirs)
    # the exported directory also loads back as an ssl_video encoder
    with torch.no_grad():
        assert torch.equal(load_encoder(out)(x), encoder(x))


def test_torchvision_format_refuses_what_torchvision_cannot_hold(tmp_path):
    tiny_r3d = ssl_video.create_encoder("r3d_18", **tiny("r3d_18"))
    with pytest.raises(UserError, match="width=1"):
        export_encoder(write_checkpoint(tmp_path / "a.pt", {"video": tiny_r3d}), tmp_path / "a",
                       format="torchvision")
    diff_r3d = ssl_video.create_encoder("r3d_18", frame_diff=True, frames=8, crop_size=32)
    with pytest.raises(UserError, match="frame_diff"):
        export_encoder(write_checkpoint(tmp_path / "c.pt", {"video": diff_r3d}), tmp_path / "c",
                       format="torchvision")
    cost = ssl_video.create_encoder("cost_r18", **tiny("cost_r18"))
    with pytest.raises(UserError, match="no torchvision counterpart"):
        export_encoder(write_checkpoint(tmp_path / "b.pt", {"video": cost}), tmp_path / "b", format="torchvision")


@pytest.fixture
def exported(tmp_path) -> Path:
    return save_encoder(warmed("r3d_18", **tiny("r3d_18")), tmp_path / "enc")


@pytest.mark.parametrize("damage", ["truncate", "garbage_header", "empty"])
def test_damaged_weights_give_one_line_error(exported, damage):
    weights = exported / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_header":
        weights.write_bytes(b"\xff" * 16 + data[16:])
    else:
        weights.write_bytes(b"")
    with pytest.raises(UserError) as info:
        load_encoder(exported)
    assert "corrupt or truncated" in one_line_error(info)


def test_unknown_architecture_gives_one_line_error(exported):
    config = json.loads((exported / "config.json").read_text())
    config["architecture"] = "resnet_from_the_future"
    (exported / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as info:
        load_encoder(exported)
    assert "unknown encoder 'resnet_from_the_future'" in one_line_error(info)


def test_weights_of_another_architecture_name_the_keys(exported, tmp_path):
    # same layout, other shapes: mc3_18 declares 1x3x3 kernels where r3d_18 has 3x3x3
    config = json.loads((exported / "config.json").read_text())
    config["architecture"] = "mc3_18"
    (exported / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as info:
        load_encoder(exported)
    message = one_line_error(info)
    assert "shape mismatch" in message and "layer2.0.conv1.0.weight" in message
    # other layout: an audio ResNet's weights under an R(2+1)D config
    other = save_encoder(ssl_video.create_encoder("audio_resnet9", **tiny("audio_resnet9")), tmp_path / "audio")
    config["architecture"], config["args"] = "r2plus1d_18", {"width": 0.125}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as info:
        load_encoder(other)
    message = one_line_error(info)
    assert "missing key(s): layer1.0.conv1.0.0.weight" in message and "unexpected key(s): bn1.bias" in message


def test_missing_or_invalid_files_give_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="no such encoder directory"):
        load_encoder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        load_encoder(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_encoder(tmp_path / "empty")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    assert main(["export", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-video: error: cannot read checkpoint") and err.count("\n") == 1
    torch.save({"model": {}}, tmp_path / "no_encoders.pt")
    with pytest.raises(UserError, match="no 'encoders' entry"):
        export_encoder(tmp_path / "no_encoders.pt", tmp_path / "o")
    with pytest.raises(UserError, match="without checkpoints/last.pt"):
        export_encoder(tmp_path / "empty", tmp_path / "o")
