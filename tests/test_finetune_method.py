"""The supervised ``finetune`` method: building from a recipe, parameter groups, init from an exported
encoder, and learning on a tiny synthetic dataset through the shared training loop."""

from __future__ import annotations

import json

import pytest
import torch

from ssl_video.data.synth import generate_synthetic_dataset
from ssl_video.engine.trainer import train
from ssl_video.errors import UserError
from ssl_video.methods import build_method
from ssl_video.models.io import save_encoder
from ssl_video.models.registry import create_encoder
from ssl_video.recipe import Recipe
from tests.factories import recipe_from, tiny_clip

TINY = {"width": 0.125, "frames": 4, "crop_size": 32}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, classes=2, videos_per_class=8, seconds=1.0, size=(32, 32), progress=False)
    return root


def finetune_recipe(synth, tmp_path, **finetune) -> Recipe:
    data = {
        "name": "finetune_tiny",
        "seed": 1,
        "method": "finetune",
        "data": {"dataset": "synthetic", "root": str(synth), "batch_size": 4, "num_workers": 0,
                 "clip": tiny_clip()},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "warmup": 2, "unit": "steps"},
        "trainer": {"max_steps": 30, "log_every": 3, "checkpoint_every": 0, "progress": False,
                    "tensorboard": False},
        "finetune": {"encoder": "r3d_18", "encoder_args": TINY, "dropout": 0.0, "backbone_lr_scale": 1.0,
                     **finetune},
    }
    return recipe_from(tmp_path, data)


def test_builder_dataset_groups_and_encoders(synth, tmp_path):
    method, dataset = build_method(finetune_recipe(synth, tmp_path, backbone_lr_scale=0.1))
    assert len(dataset) == 12 and method.head.out_features == 2  # classes from the dataset
    sample = dataset[0]
    assert sample["video"].shape == (3, 4, 32, 32) and sample["label"].item() in (0, 1)
    groups = {g["name"]: g for g in method.parameter_groups()}
    assert groups["backbone"]["lr_scale"] == 0.1 and groups["head"]["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups.values()) == len(list(method.parameters()))
    entry = method.encoders()["video"]
    assert entry["name"] == "r3d_18" and entry["args"] == TINY
    assert any(k.startswith(entry["prefix"]) for k in method.state_dict())
    out = method({"video": torch.randn(2, 3, 4, 32, 32), "label": torch.tensor([0, 1])})
    assert out["loss"].ndim == 0 and 0 <= out["top1"] <= 1


def test_frozen_backbone_trains_the_head_only(synth, tmp_path):
    method, _ = build_method(finetune_recipe(synth, tmp_path, freeze_backbone=True, num_classes=5))
    assert [g["name"] for g in method.parameter_groups()] == ["head"] and method.head.out_features == 5
    method.train()
    assert method.head.training and not method.video_encoder.training
    assert not any(p.requires_grad for p in method.video_encoder.parameters())


def test_init_from_an_exported_encoder(synth, tmp_path):
    torch.manual_seed(7)
    encoder = create_encoder("r3d_18", **TINY)
    save_encoder(encoder, tmp_path / "enc")
    method, _ = build_method(finetune_recipe(synth, tmp_path, encoder=None, encoder_args={},
                                                          init=str(tmp_path / "enc")))
    for key, value in encoder.state_dict().items():
        assert torch.equal(method.video_encoder.state_dict()[key], value)
    with pytest.raises(UserError, match="holds 'r3d_18'"):
        build_method(finetune_recipe(synth, tmp_path, encoder="mc3_18", init=str(tmp_path / "enc")))
    with pytest.raises(UserError, match="audio encoder"):
        build_method(finetune_recipe(synth, tmp_path, encoder="audio_resnet9", encoder_args={}))


def test_loss_decreases_on_synthetic_data(synth, tmp_path):
    recipe = finetune_recipe(synth, tmp_path, label_smoothing=0.1)
    recipe.trainer.max_steps = 45
    summary = train(recipe, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows]
    assert summary["status"] == "completed" and len(losses) == 15
    assert sum(losses[-3:]) / 3 < 0.85 * sum(losses[:3]) / 3, losses  # 0.63-0.75 on seeds 1-3
    assert summary["bad_files"] == 0
