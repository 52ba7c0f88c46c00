"""Slurm pieces that need no cluster: profiles, the sbatch script (--dry-run), the --slurm option on every
eval command, the command line a job runs, and reading accounting records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssl_video.cli import build_parser, main
from ssl_video.errors import ConfigError
from ssl_video.slurm import status
from ssl_video.slurm.profile import SlurmProfile, load_profile
from ssl_video.slurm.submit import strip_options

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "slurm" / "example.yaml"
LOCAL = ROOT / "slurm" / "local.yaml"


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, re.M))


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: tiny\nmethod: stica\n")
    return path


def test_shipped_profiles_load_and_document_every_field():
    import dataclasses

    example, local = load_profile(EXAMPLE), load_profile(LOCAL)
    assert (example.gpus_per_node, example.tasks(), example.signal_delay_s) == (8, 8, 120)
    assert (local.gpus_per_node, local.tasks(), local.partition) == (0, 1, "debug")
    text = EXAMPLE.read_text()
    for field in dataclasses.fields(SlurmProfile):
        assert re.search(rf"^{field.name}:", text, re.M), f"slurm/example.yaml does not document {field.name}"


@pytest.mark.parametrize(("content", "key"), [
    ("gpus_per_nodes: 4\n", "gpus_per_nodes"),
    ("nodes: two\n", "nodes"),
    ("gpus_per_node: 4\ntasks_per_node: 2\n", "tasks_per_node"),
    ("time_min: 1\nsignal_delay_s: 90\n", "signal_delay_s"),
    ("mem_gb: -1\n", "mem_gb"),
])
def test_a_bad_profile_is_one_line_naming_the_key(tmp_path, recipe, capsys, content, key):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.key == key
    assert main(["pretrain", str(recipe), "--slurm", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{key}'" in err


@pytest.mark.parametrize("nodes", [1, 4])
def test_dry_run_prints_the_sbatch_script(recipe, tmp_path, capsys, nodes):
    run = tmp_path / "run"
    assert main(["pretrain", str(recipe), "--slurm", str(EXAMPLE), "--nodes", str(nodes), "--dry-run",
                 "--run-dir", str(run)]) == 0
    script = capsys.readouterr().out
    options = sbatch_options(script)
    assert options["nodes"] == str(nodes)
    assert options["ntasks-per-node"] == options["gpus-per-node"] == "8"  # one task per GPU
    assert options["signal"] == "USR2@120" and options["open-mode"] == "append"
    assert options["time"] == "4320" and options["cpus-per-task"] == "10" and options["mem"] == "480G"
    assert options["partition"] == "gpu" and options["exclude"] == "node017"
    assert options["output"] == f"{run}/slurm/%j_0_log.out"
    assert "module load cuda/12.4" in script
    assert re.search(r"^srun .* -m submitit\.core\._submit " + re.escape(f"{run}/slurm") + "$", script, re.M)
    assert not run.exists()  # nothing submitted, nothing written


def test_eval_commands_accept_slurm_and_run_the_same_command_line(capsys, tmp_path):
    parser = build_parser()
    groups = {a.dest: a for a in parser._subparsers._group_actions[0].choices["eval"]._subparsers._group_actions}
    commands = groups["eval_command"].choices
    assert {"linear-probe", "retrieval", "pooling", "suite"} <= set(commands)
    for name, cmd in commands.items():
        assert {"--slurm", "--dry-run", "--job-dir"} <= set(cmd._option_string_actions), name
    argv = ["eval", "pooling", "--features", "f.h5", "--labels", "l.csv", "--slurm", str(LOCAL), "--dry-run",
            "--job-dir", str(tmp_path / "job")]
    assert main(argv) == 0
    options = sbatch_options(capsys.readouterr().out)
    assert options["ntasks-per-node"] == "1" and "gpus-per-node" not in options
    assert options["job-name"] == "ssl-video-eval-pooling" and options["partition"] == "debug"


@pytest.mark.parametrize(("argv", "expected"), [
    (["eval", "pooling", "--slurm", "p.yaml", "--head", "avg"], ["eval", "pooling", "--head", "avg"]),
    (["eval", "pooling", "--slurm=p.yaml", "--dry-run", "--job-dir", "d"], ["eval", "pooling"]),
    (["extract", "--array", "4", "--out", "x.h5", "--array=2"], ["extract", "--out", "x.h5"]),
    (["pretrain", "r.yaml", "a.b=1", "--nodes", "2", "--run-dir", "r"], ["pretrain", "r.yaml", "a.b=1", "--run-dir", "r"]),
])
def test_the_job_runs_the_command_line_without_the_submission_options(argv, expected):
    assert strip_options(argv) == expected


def test_submission_options_need_slurm(recipe, capsys):
    assert main(["pretrain", str(recipe), "--dry-run"]) == 2
    assert "--dry-run goes with --slurm" in capsys.readouterr().err
    assert main(["pretrain", str(recipe), "--nodes", "2"]) == 2
    assert main(["pretrain", str(recipe), "--slurm", str(LOCAL), "--nproc", "2", "--dry-run"]) == 2


def test_inside_a_job_slurm_is_ignored(monkeypatch):
    from ssl_video.cli import _slurm_handler
    from ssl_video.slurm import IN_JOB_ENV

    args = build_parser().parse_args(["eval", "pooling", "--slu", "p.yaml"])  # an abbreviation the job keeps
    assert args.slurm == "p.yaml" and _slurm_handler(args, []) is not None
    monkeypatch.setenv(IN_JOB_ENV, "12")
    assert _slurm_handler(args, []) is None  # runs the command, never submits again


SACCT = """\
7|REQUEUED|0:0|00:00:04
7|PREEMPTED|0:15|00:00:09
7|COMPLETED|0:0|00:00:20
8|FAILED|1:0|00:00:02
9_0|COMPLETED|0:0|00:00:03
9_1|RUNNING|0:0|00:00:01
10|CANCELLED by 0|0:0|00:00:00
13_1|COMPLETED|0:0|00:00:03
"""


def test_job_states_from_accounting_records(monkeypatch):
    calls = []

    def fake_run(command):
        calls.append(command[0])
        if command[0] == "sacct":
            return SACCT
        return "11|PENDING|0:00\n13_0|PENDING|0:00\n"  # squeue: 11 not in accounting yet, 13's task 0 queued

    monkeypatch.setattr(status, "_run", fake_run)
    states = status.job_states(["7", "8", "9", "10", "11", "12", "13"])
    assert (states["7"].state, states["7"].requeues, states["7"].elapsed) == ("COMPLETED", 2, "00:00:20")
    assert (states["8"].state, states["8"].exit_code) == ("FAILED", "1:0")
    assert states["9"].state == "RUNNING" and states["9"].tasks == {"0": "COMPLETED", "1": "RUNNING"}
    assert states["10"].state == "CANCELLED"
    assert states["11"].state == "PENDING" and states["12"].state == "UNKNOWN"
    assert states["13"].state == "PENDING"  # a finished task does not finish an array whose other task waits
    assert calls == ["sacct", "squeue"]


def test_error_lines_show_the_end_of_the_traceback(tmp_path):
    folder = tmp_path / "slurm"
    folder.mkdir()
    (folder / "5_0_log.err").write_text("\n".join([
        "submitit INFO starting", "ssl-video: error: features not found: x.h5",
        "submitit ERROR (t) - Submitted job triggered an exception", "Traceback (most recent call last):",
        *[f'  File "f{i}.py", line {i}' for i in range(20)], "RuntimeError: `ssl-video eval pooling` exited with code 2",
        "srun: error: localhost: task 0: Exited with exit code 1", ""]))
    path, lines = status.error_lines(tmp_path, "5", count=6)
    assert path == folder / "5_0_log.err"
    assert lines[0] == "ssl-video: error: features not found: x.h5"
    assert lines[-1].startswith("RuntimeError") and len(lines) == 6


def test_an_array_dry_run_names_one_log_per_task(tmp_path, capsys):
    from argparse import Namespace

    from ssl_video.slurm.submit import submit_command

    args = Namespace(slurm=str(LOCAL), array=3, shard=None, dry_run=True, job_dir=str(tmp_path / "job"))
    assert submit_command(args, ["extract", "--out", "x.h5", "--slurm", str(LOCAL), "--array", "3"]) == 0
    options = sbatch_options(capsys.readouterr().out)
    assert options["array"] == "0-2%3" and options["job-name"] == "ssl-video-extract"
    assert options["output"] == f"{tmp_path / 'job'}/slurm/%A_%a_0_log.out"
    with pytest.raises(Exception, match="--array must be at least 1"):
        submit_command(Namespace(**{**vars(args), "array": 0}), ["extract"])


def test_jobs_without_submissions(tmp_path, capsys):
    assert main(["jobs", "--root", str(tmp_path)]) == 0
    assert "no submitted jobs under" in capsys.readouterr().out
    assert main(["jobs", str(tmp_path)]) == 2
    assert main(["jobs", "cancel"]) == 2
