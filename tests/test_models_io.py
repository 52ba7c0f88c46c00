"""Encoder references: zoo names and exported directories resolve to the same kind of answer."""

from __future__ import annotations

import pytest
import torch

import ssl_video
from ssl_video.errors import UserError
from ssl_video.models import io
from ssl_video.models.io import CONFIG_FILE, is_encoder_directory, resolve_encoder, save_encoder, weights_hash
from ssl_video.models.registry import create_encoder

TINY = {"width": 0.0625}


def test_zoo_name_with_defaults_args_and_seed():
    resolved = resolve_encoder("r3d_18", {"width": 0.0625, "frames": 4}, defaults={"frames": 8, "fps": 10.0},
                               seed=3)
    model = resolved.model
    assert resolved.name == "r3d_18" and not resolved.is_directory and not model.training
    assert model.encoder_args == {"width": 0.0625, "frames": 4, "fps": 10.0}  # args win over defaults
    assert model.spec.frames == 4 and model.spec.fps == 10.0
    assert resolved.provenance["init"] == "random" and resolved.provenance["seed"] == 3
    again = resolve_encoder("r3d_18", {"width": 0.0625, "frames": 4}, defaults={"fps": 10.0}, seed=3)
    assert resolved.weights_hash == again.weights_hash == weights_hash(model, "r3d_18")  # same seed, same weights
    other = resolve_encoder("r3d_18", {"width": 0.0625, "frames": 4}, defaults={"fps": 10.0}, seed=4)
    assert other.weights_hash != resolved.weights_hash


def test_exported_directory_and_its_config(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("r3d_18", **TINY)
    out = save_encoder(encoder, tmp_path / "enc")
    assert is_encoder_directory(out) and is_encoder_directory(out / CONFIG_FILE)
    assert not is_encoder_directory("r3d_18") and not is_encoder_directory(tmp_path / "nothing")
    for ref in (out, str(out / CONFIG_FILE)):
        resolved = resolve_encoder(ref, defaults={"frames": 99}, seed=5, modality="video")  # defaults ignored
        assert resolved.is_directory and resolved.name == "r3d_18" and resolved.provenance["init"] == "exported"
        assert resolved.model.spec.frames == encoder.spec.frames
        assert resolved.weights_hash == weights_hash(encoder, "r3d_18")
    assert ssl_video.load_encoder is io.load_encoder


def test_args_with_a_directory_are_refused_naming_the_key(tmp_path):
    out = save_encoder(create_encoder("r3d_18", **TINY), tmp_path / "enc")
    with pytest.raises(UserError, match=r"^tsp\.encoder_args applies to zoo names only"):
        resolve_encoder(out, {"width": 0.5}, key="tsp.encoder")
    with pytest.raises(UserError, match=r"^--encoder-args applies to zoo names only"):
        resolve_encoder(str(out), {"width": 0.5}, key="--encoder")


def test_wrong_modality_is_one_line_naming_the_key(tmp_path):
    message = "tsp.encoder: 'audio_resnet9' is an audio encoder; this needs a video encoder"
    with pytest.raises(UserError) as error:
        resolve_encoder("audio_resnet9", TINY, modality="video", key="tsp.encoder")
    assert str(error.value) == message
    with pytest.raises(UserError, match="is a video encoder; this needs an audio encoder"):
        resolve_encoder("r3d_18", TINY, modality="audio")
    with pytest.raises(UserError, match="encoder not found"):
        resolve_encoder(str(tmp_path / "no" / "such"), key="--encoder")
