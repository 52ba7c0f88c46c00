"""Submission, preemption, failures and 2-task jobs against a real single-node Slurm (tests/slurm/cluster.py).

Every job runs the tiny STiCA recipe (width 0.0625, 4 frames at 32 px, synthetic videos) on the CPU. The
timeouts below only bound how long a broken cluster can hang the suite; nothing asserts on durations.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_video.cli import main
from ssl_video.slurm.state import job_states

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "slurm" / "local.yaml"
# long enough that a requeue sent two steps after a resume always lands before the last step, even on busy
# cores (the resumed part of a 16-step run lasted under a second, and a requeue once arrived after it)
STEPS = 48
WAIT_S = 420.0  # a bound for a broken cluster; a job here takes 10-30 s on an idle machine


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ssl_video.data.synth import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("slurm_data")
    generate_synthetic_dataset(root, classes=2, videos_per_class=4, seconds=1.0, fps=8.0, size=(32, 32),
                               sample_rate=8000, progress=False)
    return root


def recipe_file(folder: Path, data: Path, name: str = "recipe", batch_size: int = 2, num_workers: int = 0,
                **trainer) -> Path:
    recipe = {
        "name": "tiny_stica", "seed": 1, "method": "stica",
        "data": {"dataset": "synthetic", "root": str(data), "subset": None, "batch_size": batch_size,
                 "num_workers": num_workers,
                 "clip": {"frames": 4, "fps": 8.0, "resize": 32, "video": {"crop": 32},
                          "audio": {"sample_rate": 8000, "n_mels": 16, "n_fft": 256}}},
        "stica": {"video_encoder_args": {"width": 0.0625}, "audio_encoder_args": {"width": 0.0625},
                  "embed_dim": 16, "pooling": {"layers": 1, "heads": 4}},
        "optim": {"name": "sgd", "lr": 0.01},
        "trainer": {"max_steps": STEPS, "log_every": 1, "checkpoint_every": 2, "progress": False,
                    "tensorboard": False, "device": "cpu", **trainer},
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def profile_file(folder: Path, **changes) -> Path:
    import yaml

    profile = {**yaml.safe_load(LOCAL.read_text()), **changes}
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def submit(*argv) -> str:
    code, out = cli(*argv)
    assert code == 0, out
    match = re.search(r"submitted Slurm job (\d+)", out)
    assert match, out
    return match.group(1)


def wait_for(job_id: str, states: set[str], timeout: float = WAIT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = job_states([job_id])[job_id]
        if state.state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is {state.state}, never one of {sorted(states)}")


def wait_for_checkpoint(run: Path, min_step: int, timeout: float = WAIT_S) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "checkpoints" / "last.pt").is_file():
            with contextlib.suppress(Exception):  # being replaced right now
                step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
                if step >= min_step:
                    return step
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at step >= {min_step} in {run}")


def log_text(run: Path, job_id: str, task: int = 0, kind: str = "out") -> str:
    return (run / "slurm" / f"{job_id}_{task}_log.{kind}").read_text(errors="replace")


@pytest.fixture(scope="module")
def completed(slurm_cluster, data, tmp_path_factory) -> dict:
    """The tiny recipe submitted with --slurm slurm/local.yaml and run to the end, uninterrupted."""
    tmp = tmp_path_factory.mktemp("slurm_reference")
    run = tmp / "run"
    code, out = cli("pretrain", recipe_file(tmp, data), "--slurm", LOCAL, "--run-dir", run)
    assert code == 0, out
    job_id = re.search(r"submitted Slurm job (\d+)", out).group(1)
    state = wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state.state == "COMPLETED", log_text(run, job_id, kind="err")
    return {"run": run, "job_id": job_id, "out": out, "state": state}


def test_tiny_stica_job_completes_with_an_exportable_checkpoint(completed, tmp_path):
    from ssl_video.export import export_encoder
    from ssl_video.models.io import load_encoder

    run, job_id = completed["run"], completed["job_id"]
    assert f"run directory: {run}" in completed["out"]
    assert f"{run}/slurm/{job_id}_0_log.out" in completed["out"] and f"{job_id}_0_log.err" in completed["out"]
    jobs = json.loads((run / "slurm" / "jobs.json").read_text())["jobs"]
    assert [j["job_id"] for j in jobs] == [job_id] and jobs[0]["kind"] == "pretrain"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["step"], summary["world_size"]) == ("completed", STEPS, 1)
    assert json.loads((run / "env.json").read_text())["slurm_job_id"] == job_id
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    [exported] = export_encoder(run, tmp_path / "export")  # the video encoder
    encoder = load_encoder(exported)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state["model"]["video_encoder." + key]), key
    code, out = cli("jobs", run)
    assert code == 0
    assert f"job {job_id} [pretrain]: COMPLETED, requeued 0 time(s)" in out
    assert f"step {STEPS}/{STEPS}" in out and "completed at step" in out


def test_preempted_job_resumes_and_ends_bit_identical(completed, slurm_cluster, data, tmp_path):
    """USR2 (the time-limit signal: the job saves and requeues itself) and then `scontrol requeue` (SIGTERM:
    the job saves, Slurm requeues it); each requeue hold released by hand; the weights end bit-identical.
    Slurm signals every process of the job: a data-loading worker here must leave the signals to the trainer."""
    run = tmp_path / "run"
    job_id = submit("pretrain", recipe_file(tmp_path, data, num_workers=1), "--slurm", LOCAL, "--run-dir", run)
    wait_for_checkpoint(run, 2)
    slurm_cluster.run("scancel", "--signal=USR2", job_id)
    wait_for(job_id, {"PENDING"})
    first = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    slurm_cluster.release(job_id)
    wait_for_checkpoint(run, first + 2)
    slurm_cluster.run("scontrol", "requeue", job_id)
    wait_for(job_id, {"PENDING"})
    second = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    slurm_cluster.release(job_id)
    state = wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state.state == "COMPLETED" and state.requeues == 2

    log = log_text(run, job_id)
    assert "stopped by SIGUSR2" in log and "requeueing" in log and "stopped by SIGTERM" in log
    resumed = [int(s) for s in re.findall(r"resuming stica in \S+ at step (\d+)/", log)]
    assert resumed == [first, second] and 0 < first < second < STEPS
    assert len(re.findall(r"^submitit INFO .* Starting with", log, re.M)) == 3  # the log kept every start
    reference = torch.load(completed["run"] / "checkpoints" / "last.pt", weights_only=True)
    final = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert final["step"] == reference["step"] == STEPS
    assert final["model"].keys() == reference["model"].keys()
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key
    for a, b in zip(final["optimizer"]["state"].values(), reference["optimizer"]["state"].values()):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    code, out = cli("jobs", run)
    assert f"job {job_id} [pretrain]: COMPLETED, requeued 2 time(s)" in out


def test_a_failing_recipe_shows_failed_with_its_error(slurm_cluster, data, tmp_path):
    run = tmp_path / "run"
    job_id = submit("pretrain", recipe_file(tmp_path, data, batch_size=64), "--slurm", LOCAL, "--run-dir", run)
    assert wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"}).state == "FAILED"
    code, out = cli("jobs", "--root", tmp_path)  # every job directory under the root
    assert code == 0
    assert f"job {job_id} [pretrain]: FAILED" in out
    error = out.split("  error (", 1)[1]
    shown = error.splitlines()[1:]
    assert "UserError: the training set has 8 clips, fewer than one optimizer step needs" in shown[-1]
    assert 2 < len(shown) <= 12 and any("trainer.py" in line for line in shown)  # the end of the traceback


def test_two_task_gloo_job_keeps_both_ranks_identical(slurm_cluster, data, tmp_path):
    run = tmp_path / "run"
    profile = profile_file(tmp_path, tasks_per_node=2)
    job_id = submit("pretrain", recipe_file(tmp_path, data, max_steps=4), "--slurm", profile, "--run-dir", run)
    state = wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state.state == "COMPLETED", log_text(run, job_id, kind="err") + log_text(run, job_id, 1, "err")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 4
    first, second = summary["param_checksums"]
    assert first == second  # gradients were averaged: both ranks took the same steps
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
    assert "2 process(es) on cpu, global batch 4" in log_text(run, job_id)  # 2 tasks x 2 clips
    assert "Starting with JobEnvironment" in log_text(run, job_id, 1)  # the second task ran too


def test_cancel_a_pending_job(slurm_cluster, data, tmp_path):
    run = tmp_path / "run"
    profile = profile_file(tmp_path, extra_sbatch={"begin": "now+1hour"})
    job_id = submit("pretrain", recipe_file(tmp_path, data), "--slurm", profile, "--run-dir", run)
    wait_for(job_id, {"PENDING"})
    code, out = cli("pretrain", recipe_file(tmp_path, data), "--slurm", profile, "--run-dir", run)
    assert code == 2  # one job per run directory at a time
    code, out = cli("jobs", "cancel", run)
    assert code == 0 and f"cancelled {job_id}" in out
    assert wait_for(job_id, {"CANCELLED"}).state == "CANCELLED"


def test_an_eval_command_runs_as_a_job(slurm_cluster, tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    rows = ["video,label"]
    for i in range(16):
        label = i % 2
        np.save(features / f"v{i:02d}.npy", (rng.normal(size=(4, 8)) + 3 * label).astype(np.float32))
        rows.append(f"v{i:02d},c{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    job_dir, out_dir = tmp_path / "job", tmp_path / "report"
    job_id = submit("eval", "pooling", "--features", features, "--labels", tmp_path / "labels.csv", "--head", "avg",
                    "epochs=2", "--device", "cpu", "--out", out_dir, "--slurm", LOCAL, "--job-dir", job_dir)
    state = wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state.state == "COMPLETED", log_text(job_dir, job_id, kind="err")
    assert (out_dir / "report.json").is_file()
    record = json.loads((job_dir / "slurm" / "jobs.json").read_text())["jobs"][0]
    assert record["kind"] == "eval pooling" and "--slurm" not in record["command"]
    assert "running: ssl-video eval pooling" in log_text(job_dir, job_id)


def test_an_array_job_runs_one_shard_per_task(slurm_cluster, data, tmp_path):
    """The generic --slurm/--array handler (what `extract --slurm P --array 2` calls): task i gets --shard i/2."""
    from argparse import Namespace

    from ssl_video.slurm.submit import submit_command

    out, job_dir = tmp_path / "features.h5", tmp_path / "job"
    argv = ["extract", "--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--videos", str(data / "UCF-101"),
            "--frames", "4", "--fps", "8", "--stride", "8", "--resize", "32", "--crop", "32", "--out", str(out),
            "--workers", "0", "--device", "cpu", "--no-progress", "--slurm", str(LOCAL), "--array", "2"]
    args = Namespace(slurm=str(LOCAL), array=2, shard=None, dry_run=False, job_dir=str(job_dir))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert submit_command(args, argv, entry=main) == 0
    job_id = re.search(r"submitted Slurm job (\d+)", printed.getvalue()).group(1)
    state = wait_for(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert state.state == "COMPLETED" and state.tasks == {"0": "COMPLETED", "1": "COMPLETED"}
    assert sorted(p.name for p in tmp_path.glob("features.shard-*.h5")) == ["features.shard-0-of-2.h5",
                                                                         "features.shard-1-of-2.h5"]
    for task in (0, 1):
        log = (job_dir / "slurm" / f"{job_id}_{task}_0_log.out").read_text()
        assert f"--shard {task}/2" in log and f"shard {task}/2: 4 videos: 4 extracted" in log
    code, shown = cli("jobs", job_dir)
    assert f"job {job_id} [extract]: COMPLETED" in shown and "array tasks: 0 COMPLETED, 1 COMPLETED" in shown
