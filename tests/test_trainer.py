"""The shared training loop: schedules, learning rates per group, accumulation, determinism, resume after
SIGKILL, stop on SIGTERM/SIGUSR2, NaN handling, refused resumes, and a 2-process gloo run.

The toy methods live here (never in the package). This file also runs as a script (``python
tests/test_trainer.py pretrain ...``) so that subprocesses and ``--nproc`` children know them. Knobs that
are not recipe keys come from the ``SSL_VIDEO_TOY`` environment variable (JSON): ``sleep`` (seconds per
forward), ``nan_at`` (forward call that returns NaN; only on rank ``nan_rank`` when given), ``nan_grad_at``
(forward call whose loss is finite but whose gradients are NaN), ``signal_at`` ([call, signal name] sent to
itself).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ssl_video.cli import main
from ssl_video.config import load_config
from ssl_video.engine.batches import EpochBatchSampler
from ssl_video.engine.schedule import lr_factor, schedule_from_config
from ssl_video.engine.trainer import train
from ssl_video.errors import EXIT_NONFINITE, EXIT_STOPPED, NonFiniteLoss, UserError
from ssl_video.methods import register_method
from ssl_video.methods.base import Method
from ssl_video.recipe import OptimConfig, Recipe
from tests.factories import assert_same_state, merge, recipe_from, write_recipe

THIS = Path(__file__).resolve()
ROOT = THIS.parent.parent

# ---------------------------------------------------------------------------------------------- toy methods


class ToyData(torch.utils.data.Dataset):
    """``x`` fixed per index plus noise per (epoch, index); ``label`` from x; ``video`` for the video toy."""

    def __init__(self, size: int = 48, video: bool = False):
        self.size, self.video = size, video

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int) -> dict:
        epoch, index = divmod(int(key), self.size)
        x = torch.randn(8, generator=torch.Generator().manual_seed(index))
        noise = torch.randn(8, generator=torch.Generator().manual_seed(100_000 * (epoch + 1) + index))
        sample = {"x": x + 0.1 * noise, "label": torch.tensor(int(x[:4].sum() > 0))}
        if self.video:
            g = torch.Generator().manual_seed(index)
            sample["video"] = torch.randn(3, 4, 16, 16, generator=g) + x[0]
        return sample


class ToyMethod(Method):
    """A BN-free MLP (groups "trunk" and "head", lr_scale 1 and 0.1) or a tiny zoo video encoder + head."""

    ENCODERS = {"video": "video_encoder"}

    def __init__(self, video: bool, dropout: float, knobs: dict):
        super().__init__()
        self.knobs, self.calls = knobs, 0
        if video:
            from ssl_video.models.registry import create_encoder

            self.video_encoder = create_encoder("mc3_18", width=0.0625, frames=4, crop_size=16)
            self.trunk = None
            width = self.video_encoder.spec.feature_dim
        else:
            self.video_encoder = None
            self.trunk = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
            width = 16
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, 2)

    def forward(self, batch: dict) -> dict:
        self.calls += 1
        if self.knobs.get("sleep"):
            time.sleep(self.knobs["sleep"])
        if self.knobs.get("signal_at") and self.calls == self.knobs["signal_at"][0]:
            os.kill(os.getpid(), getattr(signal, self.knobs["signal_at"][1]))
        features = self.video_encoder(batch["video"]) if self.video_encoder is not None else self.trunk(batch["x"])
        logits = self.head(self.dropout(features))
        loss = nn.functional.cross_entropy(logits, batch["label"])
        mine = self.knobs.get("nan_rank") in (None, int(os.environ.get("RANK", "0")))
        if self.knobs.get("nan_at") == self.calls and mine:
            loss = loss * float("nan")
        if self.knobs.get("nan_grad_at") == self.calls:  # a finite loss (+0) whose gradient is NaN (inf x 0)
            loss = loss + torch.sqrt((self.head.weight * 0).sum() ** 2)
        return {"loss": loss, "top1": (logits.argmax(1) == batch["label"]).float().mean()}

    def parameter_groups(self) -> list[dict]:
        body = self.video_encoder if self.video_encoder is not None else self.trunk
        return [{"name": "trunk", "params": list(body.parameters()), "lr_scale": 1.0, "weight_decay": None},
                {"name": "head", "params": list(self.head.parameters()), "lr_scale": 0.1, "weight_decay": 0.0}]


def _knobs() -> dict:
    return json.loads(os.environ.get("SSL_VIDEO_TOY", "{}"))


@register_method("toy_mlp")
class ToyMLP(ToyMethod):
    @classmethod
    def from_recipe(cls, recipe):
        return cls(False, _knobs().get("dropout", 0.2), _knobs())

    @classmethod
    def train_dataset(cls, recipe):
        return ToyData()


@register_method("toy_video")
class ToyVideo(ToyMethod):
    @classmethod
    def from_recipe(cls, recipe):
        return cls(True, 0.0, _knobs())

    @classmethod
    def train_dataset(cls, recipe):
        return ToyData(video=True)


# ---------------------------------------------------------------------------------------------- helpers

BASE = {
    "name": "toy",
    "seed": 3,
    "method": "toy_mlp",
    "data": {"batch_size": 4, "num_workers": 0},
    "optim": {"name": "sgd", "lr": 0.2, "momentum": 0.9, "weight_decay": 1e-3, "warmup": 2, "unit": "steps",
              "clip_grad_norm": 5.0},
    "trainer": {"max_steps": 24, "log_every": 1, "checkpoint_every": 4, "progress": False, "tensorboard": False},
}


def recipe_file(tmp_path: Path, **sections) -> Path:
    return write_recipe(tmp_path, merge(BASE, **sections))


def recipe(tmp_path: Path, overrides: list[str] | None = None, **sections) -> Recipe:
    return recipe_from(tmp_path, merge(BASE, **sections), overrides)


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def script_env(**knobs) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", SSL_VIDEO_TOY=json.dumps(knobs))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_script(args: list[str], **knobs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(THIS), *args], env=script_env(**knobs), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, min_step: int, timeout: float = 120.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (run / "checkpoints" / "last.pt").is_file():
            step = weights(run)["step"]
            if step >= min_step:
                return step
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted 24-step run of the base recipe."""
    tmp = tmp_path_factory.mktemp("reference")
    summary = train(recipe(tmp), tmp / "run")
    assert summary["status"] == "completed" and summary["step"] == 24
    return weights(tmp / "run")


# ---------------------------------------------------------------------------------------------- schedules


def test_warmup_cosine_against_hand_computed_values():
    kw = {"total_steps": 10, "schedule": "cosine", "warmup_steps": 3, "warmup_start_factor": 0.1,
          "final_factor": 0.0}
    got = [lr_factor(s, **kw) for s in range(10)]
    # warm-up 0.1 -> 1 over 3 steps, then 0.5 (1 + cos(pi (s - 3) / 7))
    expected = [0.1, 0.4, 0.7, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 7)) for k in range(1, 7)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[6] == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 7)))
    assert lr_factor(10, **kw) == pytest.approx(0.0)
    assert lr_factor(5, **{**kw, "final_factor": 0.2}) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(2 * math.pi / 7)))


def test_step_and_constant_schedules_and_epoch_units():
    optim = OptimConfig(schedule="step", unit="epochs", warmup=1, warmup_start_factor=0.5, milestones=[2, 3.5],
                        gamma=0.1)
    kw = schedule_from_config(optim, total_steps=50, steps_per_epoch=10)
    assert kw["warmup_steps"] == 10 and kw["milestones"] == [20, 35]
    got = [lr_factor(s, **kw) for s in (0, 5, 10, 19, 20, 34, 35, 49)]
    assert got == pytest.approx([0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(7, 10, "constant", 2) == 1.0


# ---------------------------------------------------------------------------------------------- sampling


def test_sampler_keys_cover_each_epoch_once_and_resume_mid_epoch():
    n, batch, world, accum = 23, 2, 2, 2
    micro = n // (batch * world * accum) * accum  # 2 steps of 2 micro-batches
    samplers = [EpochBatchSampler(n, batch, world, rank, seed=5, micro_per_epoch=micro) for rank in range(world)]
    for s in samplers:
        s.set_position(3, 0)
    keys = [k for s in samplers for b in s for k in b]
    assert len(keys) == len(set(keys)) == micro * batch * world
    assert all(k // n == 3 for k in keys)
    full = list(samplers[1])
    samplers[1].set_position(3, 2)
    assert list(samplers[1]) == full[2:]
    assert not torch.equal(samplers[0].permutation(3), samplers[0].permutation(4))


# ---------------------------------------------------------------------------------------------- optimisation


def test_per_group_learning_rates_follow_the_schedule(tmp_path):
    summary = train(recipe(tmp_path, optim={"name": "adamw", "lr": 0.01, "warmup": 3, "final_factor": 0.1},
                           trainer={"max_steps": 8}), tmp_path / "run")
    assert summary["status"] == "completed"
    kw = {"total_steps": 8, "schedule": "cosine", "warmup_steps": 3, "warmup_start_factor": 0.0,
          "final_factor": 0.1}
    for row in metrics(tmp_path / "run"):
        factor = lr_factor(row["step"] - 1, **kw)  # the rate of the update just taken
        assert row["lr/trunk"] == pytest.approx(0.01 * factor)
        assert row["lr/head"] == pytest.approx(0.001 * factor)
    groups = weights(tmp_path / "run")["optimizer"]["param_groups"]
    assert [(g["name"], g["lr_scale"], g["weight_decay"]) for g in groups] == [("trunk", 1.0, 1e-3),
                                                                              ("head", 0.1, 0.0)]
    assert groups[1]["lr"] == pytest.approx(0.001 * lr_factor(7, **kw))


def test_gradient_accumulation_equals_one_big_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_VIDEO_TOY", json.dumps({"dropout": 0.0}))
    runs = {}
    for name, batch, accum in (("big", 8, 1), ("accum", 2, 4)):
        train(recipe(tmp_path, data={"batch_size": batch}, trainer={"max_steps": 5, "grad_accum": accum}),
              tmp_path / name)
        runs[name] = weights(tmp_path / name)["model"]
    for key in runs["big"]:
        torch.testing.assert_close(runs["accum"][key], runs["big"][key], rtol=0, atol=1e-6)
    assert not torch.equal(runs["big"]["head.weight"], ToyMethod(False, 0.0, {}).head.weight)


def test_same_seed_same_weights_and_stop_at_step_then_resume_is_bit_identical(tmp_path, reference):
    again = tmp_path / "again"
    assert train(recipe(tmp_path), again)["status"] == "completed"
    assert_same_state(weights(again), reference)
    split = tmp_path / "split"
    first = train(recipe(tmp_path, trainer={"stop_at_step": 10}), split)
    assert (first["status"], first["step"]) == ("stopped_at_step", 10)
    second = train(recipe(tmp_path, trainer={"checkpoint_every": 7, "log_every": 5}), split)
    assert (second["status"], second["step"], second["resumed_from"]) == ("completed", 24, 10)
    assert_same_state(weights(split), reference)
    steps = [row["step"] for row in metrics(split)]
    assert steps == sorted(set(steps)) and steps[:10] == list(range(1, 11))
    workers = train(recipe(tmp_path, data={"num_workers": 2}), tmp_path / "workers")
    assert workers["step"] == 24  # data loading processes change nothing
    assert_same_state(weights(tmp_path / "workers"), reference)
    other = train(recipe(tmp_path, seed=4), tmp_path / "other")
    assert other["status"] == "completed"
    assert not torch.equal(weights(tmp_path / "other")["model"]["head.weight"], reference["model"]["head.weight"])


def test_the_state_comparison_fails_on_any_missing_or_different_entry(reference):
    # mutation: a comparison that zips optimizer states (a missing entry would pass unnoticed)
    import copy

    assert_same_state(reference, copy.deepcopy(reference))
    for damage in ("drop_momentum", "drop_param", "change_momentum"):
        broken = copy.deepcopy(reference)
        state = broken["optimizer"]["state"]
        first = sorted(state)[0]
        if damage == "drop_momentum":
            del state[first]["momentum_buffer"]
        elif damage == "drop_param":
            del state[first]
        else:
            state[first]["momentum_buffer"].view(-1)[0] += 1e-7
        with pytest.raises(AssertionError):
            assert_same_state(reference, broken)


# ---------------------------------------------------------------------------------------------- stopping


def test_sigkill_mid_run_then_resume_gives_bit_identical_weights(tmp_path, reference):
    path, run = recipe_file(tmp_path), tmp_path / "run"
    proc = start_script(["pretrain", str(path), "--run-dir", str(run)], sleep=0.15)
    try:
        killed_after = wait_for_checkpoint(proc, run, min_step=8)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 8 <= killed_after < 24
    summary = train(recipe(tmp_path), run)
    assert summary["resumed_from"] >= killed_after and summary["step"] == 24
    assert_same_state(weights(run), reference)


@pytest.mark.parametrize("signame", ["SIGUSR2", "SIGTERM"])
def test_signal_checkpoints_at_the_next_step_boundary(tmp_path, monkeypatch, reference, signame):
    monkeypatch.setenv("SSL_VIDEO_TOY", json.dumps({"signal_at": [6, signame]}))
    run = tmp_path / "run"
    summary = train(recipe(tmp_path, trainer={"checkpoint_every": 0}), run)
    assert (summary["status"], summary["step"]) == ("stopped", 6)  # the step that was running finished
    state = weights(run)
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (6, 0, 6)
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    monkeypatch.delenv("SSL_VIDEO_TOY")
    assert train(recipe(tmp_path), run)["step"] == 24
    assert_same_state(weights(run), reference)


@pytest.mark.slow
def test_sigterm_to_the_command_writes_a_checkpoint_and_exits_3(tmp_path):
    path, run = recipe_file(tmp_path, trainer={"checkpoint_every": 2}), tmp_path / "run"
    proc = start_script(["pretrain", str(path), "--run-dir", str(run)], sleep=0.15)
    seen = wait_for_checkpoint(proc, run, min_step=2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_STOPPED, err
    assert "stopped by SIGTERM" in out
    assert seen <= weights(run)["step"] < 24


def test_sigterm_to_every_process_of_the_job_still_saves(tmp_path):
    # a scheduler signals the whole job, data-loader workers included: they must not die before the trainer saves
    path, run = recipe_file(tmp_path, trainer={"checkpoint_every": 2}, data={"num_workers": 1}), tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(THIS), "pretrain", str(path), "--run-dir", str(run)],
                            env=script_env(sleep=0.15), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    seen = wait_for_checkpoint(proc, run, min_step=2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_STOPPED, err
    assert "stopped by SIGTERM" in out
    assert seen <= weights(run)["step"] < 24


def test_nan_loss_stops_keeps_last_good_checkpoint_exportable(tmp_path, monkeypatch, capsys):
    from ssl_video.export import export_encoder
    from ssl_video.models.io import load_encoder

    monkeypatch.setenv("SSL_VIDEO_TOY", json.dumps({"nan_at": 6}))
    path, run = recipe_file(tmp_path, method="toy_video", trainer={"checkpoint_every": 2}), tmp_path / "run"
    code = main(["pretrain", str(path), "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert code == EXIT_NONFINITE
    assert err.count("\n") == 1 and "loss is not finite at step 5" in err and "(step 4)" in err
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    [out] = export_encoder(run, tmp_path / "export")
    encoder = load_encoder(out)
    prefix = "video_encoder."
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state["model"][prefix + key])
    with pytest.raises(NonFiniteLoss, match="no checkpoint had been written yet"):
        train(recipe(tmp_path, method="toy_video", trainer={"checkpoint_every": 0}), tmp_path / "fresh")


def test_non_finite_gradients_behind_a_finite_loss_stop_the_run(tmp_path, monkeypatch, capsys):
    # mutation: only the loss checked (NaN gradients would poison the weights at a finite loss)
    monkeypatch.setenv("SSL_VIDEO_TOY", json.dumps({"nan_grad_at": 4}))
    path, run = recipe_file(tmp_path, trainer={"checkpoint_every": 2}), tmp_path / "run"
    assert main(["pretrain", str(path), "--run-dir", str(run)]) == EXIT_NONFINITE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gradient norm is not finite at step 3" in err and "grad_norm=nan" in err
    state = weights(run)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("code, words", [(28, "No space left on device"), (5, "Input/output error")])
def test_a_failing_checkpoint_write_stops_with_one_line_and_keeps_the_previous(tmp_path, monkeypatch, capsys,
                                                                                code, words):
    # mutation: the OSError escaping as a traceback, or the previous last.pt replaced by a partial file
    import errno

    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            raise OSError(code, os.strerror(code))
        return real_save(obj, f, *args, **kwargs)

    assert errno.errorcode[code] in ("ENOSPC", "EIO")
    monkeypatch.setattr(torch, "save", failing_save)
    path, run = recipe_file(tmp_path, trainer={"checkpoint_every": 2}), tmp_path / "run"
    assert main(["pretrain", str(path), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "checkpoint of step 4" in err and "(step 2) is intact" in err
    monkeypatch.setattr(torch, "save", real_save)
    assert weights(run)["step"] == 2 and not list((run / "checkpoints").glob(".*tmp*"))


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(tmp_path):
    # mutation: the non-finite flag not all-reduced (rank 0 would step on, rank 1 raise, the job hang)
    path, run = recipe_file(tmp_path, trainer={"max_steps": 12, "checkpoint_every": 2}), tmp_path / "run"
    proc = start_script(["pretrain", str(path), "--run-dir", str(run), "--nproc", "2"], nan_at=6, nan_rank=1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_NONFINITE, err
    assert "loss is not finite at step 5" in err and "on another process" in err
    assert weights(run)["step"] == 4


def test_trackers_get_the_recipe_once_and_every_logged_line(tmp_path, monkeypatch):
    # mutations: trackers never initialised with the recipe, metric lines not forwarded, never finished
    from accelerate.tracking import GeneralTracker

    from ssl_video.engine import trainer as trainer_module

    class Recorder(GeneralTracker):
        name, requires_logging_directory, main_process_only = "recorder", False, True

        def __init__(self):
            super().__init__()
            self.config, self.lines, self.finished = None, [], False

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.config = values

        def log(self, values, step=None, **kwargs):
            self.lines.append((step, values))

        def finish(self):
            self.finished = True

    recorder = Recorder()
    monkeypatch.setitem(trainer_module.TRACKERS, "wandb", recorder)
    train(recipe(tmp_path, trainer={"trackers": ["wandb"], "max_steps": 4}), tmp_path / "run")
    assert recorder.config["optim.lr"] == 0.2 and recorder.config["method"] == "toy_mlp"
    assert [step for step, _ in recorder.lines] == [1, 2, 3, 4] and "loss" in recorder.lines[0][1]
    assert recorder.finished


def test_a_tracker_that_is_not_installed_is_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    # mutation: the missing package found only when the first metric line is logged (after the run started)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    path, run = recipe_file(tmp_path), tmp_path / "run"
    assert main(["pretrain", str(path), "trainer.trackers=[mlflow]", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trainer.trackers: mlflow is not installed" in err and not run.exists()


# ---------------------------------------------------------------------------------------------- resume rules


def test_resume_refuses_an_incompatible_recipe_and_names_the_keys(tmp_path, capsys):
    run = tmp_path / "run"
    train(recipe(tmp_path, trainer={"stop_at_step": 4}), run)
    with pytest.raises(UserError, match="2 key") as info:
        train(recipe(tmp_path, optim={"lr": 0.3}, data={"batch_size": 2}), run)
    message = str(info.value)
    assert "optim.lr: 0.2 -> 0.3" in message and "data.batch_size: 4 -> 2" in message and "\n" not in message
    path = recipe_file(tmp_path, trainer={"max_steps": 30})
    assert main(["pretrain", str(path), "--run-dir", str(run)]) == 2
    assert "trainer.max_steps: 24 -> 30" in capsys.readouterr().err
    # run-time keys may change; the world size may not
    state = weights(run)
    state["world_size"] = 2
    torch.save(state, run / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="2 process"):
        train(recipe(tmp_path, data={"num_workers": 1}, trainer={"log_every": 3}), run)


def test_run_directory_layout(tmp_path):
    run = tmp_path / "run"
    train(recipe(tmp_path, trainer={"max_steps": 6, "keep_every": 3, "tensorboard": True, "log_every": 2}), run)
    assert (run / "config.yaml").is_file() and (run / "summary.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_3.pt", "step_6.pt"]
    env = json.loads((run / "env.json").read_text())
    assert env["packages"]["torch"] and env["git_revision"] and env["world_size"] == 1
    assert env["hostname"] and isinstance(env["command"], list)
    assert any((run / "tb").iterdir())
    rows = metrics(run)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"loss", "top1", "lr", "lr/trunk", "lr/head", "clips_per_s", "data_wait", "grad_norm"} <= set(rows[0])
    saved = load_config(Recipe, run / "config.yaml")
    assert saved.trainer.keep_every == 3 and saved.method == "toy_mlp"


# ---------------------------------------------------------------------------------------------- 2 processes


@pytest.mark.slow
def test_two_gloo_processes_hold_identical_weights_and_stop_together(tmp_path):
    path, run = recipe_file(tmp_path, trainer={"max_steps": 12, "checkpoint_every": 2}), tmp_path / "run"
    proc = start_script(["pretrain", str(path), "--run-dir", str(run), "--nproc", "2"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "terminate called" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 12
    first, second = summary["param_checksums"]
    assert first == second
    assert weights(run)["world_size"] == 2
    single = train(recipe(tmp_path, trainer={"max_steps": 12}), tmp_path / "single")
    assert single["param_checksums"][0] != first  # a global batch twice as large trains something else
    with pytest.raises(UserError, match="2 process"):
        train(recipe(tmp_path, trainer={"max_steps": 12}), run)

    # SIGTERM to the launcher reaches both ranks; they agree on the step, save once and exit 3
    stopped = tmp_path / "stopped"
    proc = start_script(["pretrain", str(path), "--run-dir", str(stopped), "--nproc", "2"], sleep=0.2)
    wait_for_checkpoint(proc, stopped, min_step=2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, err
    assert weights(stopped)["step"] < 12
    proc = start_script(["pretrain", str(path), "--run-dir", str(stopped), "--nproc", "2"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_state(weights(stopped), weights(run))


def test_pretrain_arguments_are_checked(tmp_path, monkeypatch, capsys):
    path = recipe_file(tmp_path)
    assert main(["pretrain", str(path), "--nproc", "0"]) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["pretrain", str(path)]) == 2
    assert "give --run-dir" in capsys.readouterr().err
    assert main(["pretrain", str(path), "trainer.nope=1"]) == 2
    assert "trainer.nope" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
