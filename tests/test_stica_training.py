"""The real pipeline under DDP and SIGKILL: STiCA (Feature Crop and transformer pooling on, augmentation, a
loader worker) through the real trainer, on synthetic clips.

- Two gloo processes with a batch of B each compute, at the first step, the loss and gradients one process
  computes with the batch of 2B (negatives gathered across processes; BatchNorm in eval mode so that the
  statistics cannot differ), and hold identical weights after several steps.
- SIGKILL at a step, then resume: weights, optimizer state and the data each step saw are bit-identical to an
  uninterrupted run, in fp32 and under bf16 autocast.

This file also runs as a script (``python tests/test_stica_training.py pretrain ...``) so the ``--nproc``
children know the test methods registered here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ssl_video.cli import main
from ssl_video.engine.trainer import train
from ssl_video.methods import register_method
from ssl_video.methods.stica import STiCA
from tests.factories import assert_same_state, recipe_from, write_recipe

THIS = Path(__file__).resolve()
ROOT = THIS.parent.parent


@register_method("stica_eval_bn", section="stica")
class StiCAEvalBN(STiCA):
    """STiCA with every BatchNorm on its running statistics: a batch split over processes then computes
    exactly what one process computes on the whole batch."""

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


@register_method("stica_traced", section="stica")
class StiCATraced(STiCA):
    """STiCA that also reports which clips a step saw (``seen``: a fingerprint of the batch's indices)."""

    def forward(self, batch: dict) -> dict:
        out = super().forward(batch)
        index = batch["index"].double()
        out["seen"] = (index * 1000.0 + index.square()).sum()
        return out


def stica_recipe(root: Path, method: str, batch_size: int, frames: int = 8, **trainer) -> dict:
    return {
        "name": "stica_real", "seed": 3, "method": method,
        "data": {"dataset": "synthetic", "root": str(root), "subset": None, "batch_size": batch_size,
                 "num_workers": trainer.pop("num_workers", 0),
                 "clip": {"frames": frames, "fps": frames, "resize": 32,
                          "video": {"crop": 32, "scale": [0.6, 1.0], "flip": False, "color_jitter": 0.8},
                          "audio": {"sample_rate": 8000, "n_mels": 16, "n_fft": 256}}},
        "optim": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.0, "unit": "steps"},
        "trainer": {"max_steps": 4, "log_every": 1, "checkpoint_every": 1, "progress": False,
                    "tensorboard": False, "device": "cpu", **trainer},
        "stica": {"video_encoder_args": {"width": 0.0625}, "audio_encoder_args": {"width": 0.0625},
                  "embed_dim": 16, "head_dropout": 0.0, "feature_crop": True, "crop_weight": 0.5,
                  "pooling": {"layers": 2, "heads": 2}},
    }


@pytest.fixture(scope="module")
def av_data(tmp_path_factory):
    from ssl_video.data.synth import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("av")
    generate_synthetic_dataset(root, classes=2, videos_per_class=8, seconds=1.0, fps=8.0, size=(32, 32),
                               sample_rate=8000, progress=False)
    return root


def state(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def script_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_script(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(THIS), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=script_env())


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_doubled_batch(av_data, tmp_path):
    # mutations: negatives not gathered across processes (each rank's NCE sees half the keys: other loss and
    # gradients); crop offsets drawn per process; gradients not averaged (the ranks' weights drift apart)
    single = train(recipe_from(tmp_path / "single", stica_recipe(av_data, "stica_eval_bn", 8, max_steps=1)),
                   tmp_path / "single" / "run", handle_signals=False)
    assert single["step"] == 1
    path = write_recipe(tmp_path / "ddp", stica_recipe(av_data, "stica_eval_bn", 4, keep_every=1))
    done = run_script(["pretrain", str(path), "--run-dir", str(tmp_path / "ddp" / "run"), "--nproc", "2"])
    assert done.returncode == 0, done.stderr
    ddp_run, single_run = tmp_path / "ddp" / "run", tmp_path / "single" / "run"
    first, reference = state(ddp_run, "step_1.pt"), state(single_run)
    assert first["world_size"] == 2 and reference["world_size"] == 1
    for name, value in reference["model"].items():
        # same weights after one SGD step from the same start: the same gradients (w1 = w0 - lr * g)
        torch.testing.assert_close(first["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(state(ddp_run, "step_2.pt")["model"]["video_head.net.5.weight"],
                           first["model"]["video_head.net.5.weight"])  # the weights do move
    loss_ddp, loss_single = metrics(ddp_run)[0]["loss"], metrics(single_run)[0]["loss"]
    assert loss_ddp == pytest.approx(loss_single, rel=1e-5) and metrics(ddp_run)[0]["loss_crop"] > 0
    summary = json.loads((ddp_run / "summary.json").read_text())
    assert summary["step"] == 4 and len(set(summary["param_checksums"])) == 1  # identical on both ranks


@pytest.mark.slow
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_sigkill_at_a_step_then_resume_is_bit_identical(av_data, tmp_path, autocast):
    # mutations: per-step reseeding removed (dropout/augmentation after a resume differ); optimizer state not
    # reloaded (momentum restarts); the sampler not positioned mid-epoch (other clips after the resume)
    # bf16: 24 frames, so that no time axis of the encoder is 2 steps long: PyTorch's CPU bf16 Conv3d backward
    # returns NaN weight gradients for a (3, 1, 1) kernel on 2 time steps (measured with torch 2.14; the
    # trainer's gradient check stops such a run, it never trains on them)
    data = stica_recipe(av_data, "stica_traced", 4, frames=24 if autocast else 8, max_steps=8, num_workers=1,
                        cpu_autocast=autocast)
    reference = tmp_path / "reference"
    summary = train(recipe_from(tmp_path, data), reference, handle_signals=False)
    assert summary["step"] == 8
    kill_at = random.Random().randint(2, 5)
    path, run = write_recipe(tmp_path, data), tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(THIS), "pretrain", str(path), "--run-dir", str(run)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=script_env())
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            last = run / "checkpoints" / "last.pt"
            if last.is_file() and state(run)["step"] >= kill_at:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = state(run)["step"]
    assert kill_at <= killed_at < 8 or proc.returncode == 0, f"killed at step {killed_at}"
    resumed = train(recipe_from(tmp_path, data), run, handle_signals=False)
    assert resumed["step"] == 8 and (resumed["resumed_from"] or 0) >= killed_at
    assert_same_state(state(run), state(reference))
    assert [m["seen"] for m in metrics(run)] == [m["seen"] for m in metrics(reference)]  # the same clips


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
