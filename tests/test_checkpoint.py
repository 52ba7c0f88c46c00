"""Checkpoints: atomic writes survive crashes, safe loading, the documented keys, and the resume rule."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ssl_video.engine.checkpoint import (
    RUNTIME_KEYS,
    atomic_save,
    check_resume,
    config_differences,
    load_checkpoint,
    remove_stale_tmp,
    save_checkpoint,
)
from ssl_video.errors import UserError

CHECKPOINT_KEYS = {"model", "encoders", "step", "epoch", "step_in_epoch", "steps_per_epoch", "total_steps",
                   "optimizer", "scaler", "world_size", "config", "recipe", "git_revision", "version",
                   "format_version", "train_seconds", "metrics"}


def test_a_failing_write_leaves_the_previous_file(tmp_path, monkeypatch):
    last = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "step": 1}, last)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 2}, last)
    monkeypatch.undo()
    state = load_checkpoint(last)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]


def test_a_process_killed_mid_write_leaves_the_previous_file(tmp_path):
    last = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.ones(3)}, "step": 1}, last)
    script = textwrap.dedent(f"""
        import os, torch
        from ssl_video.engine.checkpoint import atomic_save
        def dying_save(obj, f, *args, **kwargs):
            f.write(b"half a checkpoint"); f.flush()
            os._exit(9)
        torch.save = dying_save
        atomic_save({{"model": {{}}, "step": 2}}, __import__("pathlib").Path({str(last)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 9
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert leftovers and load_checkpoint(last)["step"] == 1
    remove_stale_tmp(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_kept_copy_and_unreadable_checkpoint(tmp_path):
    last, kept = tmp_path / "last.pt", tmp_path / "step_5.pt"
    save_checkpoint({"model": {}, "step": 5}, last, keep=kept)
    assert load_checkpoint(kept)["step"] == 5
    save_checkpoint({"model": {}, "step": 6}, last)
    assert load_checkpoint(kept)["step"] == 5 and load_checkpoint(last)["step"] == 6
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_config_differences_ignore_runtime_keys():
    saved = {"name": "a", "seed": 0, "data": {"num_workers": 2, "root": "/x", "batch_size": 8},
             "optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "trainer": {"log_every": 10, "max_steps": 5},
             "finetune": {"encoder_args": {}}}
    current = {"name": "b", "seed": 0, "data": {"num_workers": 8, "root": "/y", "batch_size": 8},
               "optim": {"lr": 0.1, "betas": (0.9, 0.99)}, "trainer": {"log_every": 1, "max_steps": 5},
               "finetune": {"encoder_args": {}}}
    assert config_differences(saved, current) == []
    current["finetune"]["encoder_args"] = {"width": 0.5}
    current["stica"] = {"temperature": 0.1}
    current["trainer"]["max_steps"] = 6
    assert config_differences(saved, current) == ["finetune.encoder_args.width", "stica.temperature",
                                                   "trainer.max_steps"]
    with pytest.raises(UserError, match=r"3 key\(s\).*finetune\.encoder_args\.width: '<unset>' -> 0\.5"):
        check_resume(saved, current, "runs/x")
    assert "trainer.stop_at_step" in RUNTIME_KEYS and "optim.lr" not in RUNTIME_KEYS


def test_training_checkpoint_has_the_documented_keys_and_loads_safely(tmp_path):
    from test_trainer import recipe

    from ssl_video.engine.trainer import train
    from ssl_video.export import read_checkpoint

    train(recipe(tmp_path, method="toy_video", trainer={"max_steps": 3}), tmp_path / "run",
          recipe_path="recipes/toy.yaml")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert set(state) == CHECKPOINT_KEYS
    assert (state["step"], state["world_size"], state["recipe"]) == (3, 1, "recipes/toy.yaml")
    assert state["encoders"]["video"]["prefix"] == "video_encoder."
    assert state["config"]["method"] == "toy_video" and state["metrics"]["step"] == 3
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
