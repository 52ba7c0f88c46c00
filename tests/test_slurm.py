"""Slurm pieces that need no cluster: profiles, the sbatch script (--dry-run), the --slurm option on every
eval command, the command line a job runs, and reading accounting records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssl_video.cli import build_parser, main
from ssl_video.errors import ConfigError
from ssl_video.slurm import state, status
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


# Recorded outputs (Slurm 22.05) of the three sources job states are merged from.
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
SACCT_FORMAT = "--format=JobID,State,ExitCode,Elapsed"


def scontrol_record(job_id: int, state: str, array: tuple[int, str] | None = None, restarts: int = 0,
                    run_time: str = "00:00:05", exit_code: str = "0:0") -> str:
    """One line of `scontrol --oneliner show job` (the fields that matter, amid the usual others)."""
    ids = f"JobId={job_id} " + (f"ArrayJobId={array[0]} ArrayTaskId={array[1]} ArrayTaskThrottle=2 " if array else "")
    return (f"{ids}JobName=ssl-video-extract UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
            f"Nice=0 Account=root QOS=normal JobState={state} Reason=None Dependency=(null) Requeue=1 "
            f"Restarts={restarts} BatchFlag=1 Reboot=0 ExitCode={exit_code} RunTime={run_time} TimeLimit=00:30:00 "
            f"TimeMin=N/A SubmitTime=2026-11-30T14:09:31 Partition=debug AllocNode:Sid=localhost:5029 "
            f"NodeList=localhost NumNodes=1 NumCPUs=1 TRES=cpu=1,node=1,billing=1 Command=(null) WorkDir=/tmp "
            f"StdErr=/tmp/job/slurm/%A_%a_0_log.err StdOut=/tmp/job/slurm/%A_%a_0_log.out Power= \n")


def merged(job_id: str, sacct: str = "", squeue: str = "", scontrol: str = "", size: int | None = None):
    sizes = {job_id: size} if size else None
    return state.merge_states([job_id], state.parse_sacct(sacct), state.parse_squeue(squeue),
                              state.parse_scontrol(scontrol), sizes)[job_id]


def test_states_from_accounting_records():
    records = state.parse_sacct(SACCT)
    states = state.merge_states(["7", "8", "9", "10", "12"], records, [], [])
    assert (states["7"].state, states["7"].requeues, states["7"].elapsed) == ("COMPLETED", 2, "00:00:20")
    assert (states["8"].state, states["8"].exit_code) == ("FAILED", "1:0")
    assert states["9"].state == "RUNNING" and states["9"].tasks == {"0": "COMPLETED", "1": "RUNNING"}
    assert states["10"].state == "CANCELLED" and states["10"].tasks == {}
    assert states["12"].state == "UNKNOWN"  # known to no source


def test_a_task_accounting_lacks_after_it_left_the_queue_is_not_dropped():
    """The flaky array test: task 1 recorded, task 0 finished and gone from squeue but not in sacct yet."""
    sacct = "21_1|COMPLETED|0:0|00:00:06\n"
    job = merged("21", sacct, squeue="", scontrol="", size=2)
    assert job.state == "UNKNOWN" and job.tasks == {"0": "UNKNOWN", "1": "COMPLETED"}
    controller = (scontrol_record(22, "COMPLETED", (21, "0"), run_time="00:00:04")
                  + scontrol_record(21, "COMPLETED", (21, "1"), run_time="00:00:06"))
    job = merged("21", sacct, squeue="", scontrol=controller)  # the controller still knows the finished task
    assert job.state == "COMPLETED" and job.tasks == {"0": "COMPLETED", "1": "COMPLETED"}
    assert (job.elapsed, job.exit_code) == ("00:00:04", "0:0")  # task 0's


def test_an_array_accounting_shows_as_one_bare_record_is_not_finished_by_it():
    """What sacct printed for about two seconds after both tasks of a 2-task array had left squeue."""
    for sacct in ("31|PENDING|0:0|00:00:00\n", "31|COMPLETED|0:0|00:00:01\n"):
        assert merged("31", sacct, size=2).tasks == {"0": "UNKNOWN", "1": "UNKNOWN"}
        assert merged("31", sacct, size=2).state == "UNKNOWN"
    controller = scontrol_record(32, "RUNNING", (31, "0")) + scontrol_record(31, "COMPLETED", (31, "1"))
    job = merged("31", "31|COMPLETED|0:0|00:00:01\n", scontrol=controller)
    assert job.state == "RUNNING" and job.tasks == {"0": "RUNNING", "1": "COMPLETED"}


def test_a_pending_task_accounting_does_not_know_keeps_the_array_pending():
    job = merged("13", "13_1|COMPLETED|0:0|00:00:03\n", squeue="13_0|PENDING|0:00\n", size=2)
    assert job.state == "PENDING" and job.tasks == {"0": "PENDING", "1": "COMPLETED"}


def test_the_freshest_source_wins():
    # accounting still says PENDING, the controller already knows the job finished
    job = merged("40", "40|PENDING|0:0|00:00:00\n", scontrol=scontrol_record(40, "FAILED", exit_code="1:0"))
    assert (job.state, job.exit_code, job.tasks) == ("FAILED", "1:0", {})
    # the queue says RUNNING while the controller's record (asked earlier) said PENDING
    job = merged("41", "", squeue="41|RUNNING|0:03\n", scontrol=scontrol_record(41, "PENDING"))
    assert job.state == "RUNNING"


def test_requeues_count_every_start_in_accounting_and_the_controller():
    # requeued (scontrol requeue) and waiting again: accounting has only the first start's record so far
    sacct = "6|REQUEUED|0:0|00:00:02\n"
    job = merged("6", sacct, squeue="6|PENDING|0:00\n", scontrol=scontrol_record(6, "PENDING", restarts=1))
    assert (job.state, job.requeues) == ("PENDING", 1)
    sacct += "6|COMPLETED|0:0|00:00:04\n"
    job = merged("6", sacct, scontrol=scontrol_record(6, "COMPLETED", restarts=1, run_time="00:00:04"))
    assert (job.state, job.requeues, job.elapsed) == ("COMPLETED", 1, "00:00:04")
    # an array task requeued twice (accounting only: the controller has forgotten the job)
    sacct = ("50_0|COMPLETED|0:0|00:00:03\n50_1|REQUEUED|0:0|00:00:01\n50_1|PREEMPTED|0:15|00:00:02\n"
             "50_1|COMPLETED|0:0|00:00:05\n")
    job = merged("50", sacct, size=2)
    assert (job.state, job.requeues, job.tasks) == ("COMPLETED", 2, {"0": "COMPLETED", "1": "COMPLETED"})


def test_compressed_pending_array_tasks_are_every_task_they_name():
    squeue = "15_[2-3%2]|PENDING|0:00\n15_0|RUNNING|0:01\n15_1|RUNNING|0:01\n"
    sacct = "15_0|RUNNING|0:0|00:00:01\n15_1|RUNNING|0:0|00:00:01\n15_[2-3%2]|PENDING|0:0|00:00:00\n"
    controller = (scontrol_record(15, "PENDING", (15, "2-3%2"), run_time="00:00:00")
                  + scontrol_record(17, "RUNNING", (15, "1")) + scontrol_record(16, "RUNNING", (15, "0")))
    for sources in ({"squeue": squeue}, {"sacct": sacct}, {"scontrol": controller}):
        job = merged("15", **sources)
        assert job.tasks == {"0": "RUNNING", "1": "RUNNING", "2": "PENDING", "3": "PENDING"}, sources
        assert job.state == "RUNNING"
    # 0 and 1 done, the pending record now names only 3, and the submission says there are 4
    job = merged("15", "15_0|COMPLETED|0:0|00:00:05\n15_1|COMPLETED|0:0|00:00:08\n15_2|RUNNING|0:0|00:00:01\n",
                 squeue="15_[3]|PENDING|0:00\n15_2|RUNNING|0:01\n", size=4)
    assert job.tasks == {"0": "COMPLETED", "1": "COMPLETED", "2": "RUNNING", "3": "PENDING"}
    assert [int(t) for t in merged("60", squeue="60_[0-2,5,8-12:2]|PENDING|0:00\n").tasks] == [0, 1, 2, 5, 8, 10, 12]


def test_scontrol_records_with_and_without_oneliner():
    one = scontrol_record(3, "COMPLETED", (1, "0")) + scontrol_record(1, "RUNNING", (1, "1"))
    several = one.replace(" Nice=", "\n   Nice=").replace(" Restarts=", "\n   Restarts=").replace("\n", "\n\n", 1)
    for text in (one, several):
        records = state.parse_scontrol(text)
        assert [(r.job_id, r.task, r.state) for r in records] == [("1", "0", "COMPLETED"), ("1", "1", "RUNNING")]


def test_job_states_asks_the_three_sources_and_knows_array_sizes(monkeypatch, tmp_path):
    from ssl_video.slurm.jobs import record_job

    calls = []

    def fake_run(command):
        calls.append(command)
        if command[0] == "sacct":
            return SACCT
        if command[0] == "scontrol":
            return {"9": scontrol_record(9, "RUNNING", (9, "1"))}.get(command[-1])  # None: an id it forgot
        return "11|PENDING|0:00\n13_0|PENDING|0:00\n"  # squeue: 11 not in accounting yet, 13's task 0 queued

    monkeypatch.setattr(state, "_run", fake_run)
    states = state.job_states(["7", "9", "11", "12", "13"], {"13": 3})
    assert states["11"].state == "PENDING" and states["12"].state == "UNKNOWN"
    assert states["13"].state == "PENDING" and states["13"].tasks == {"0": "PENDING", "1": "COMPLETED", "2": "UNKNOWN"}
    assert [c[0] for c in calls] == ["sacct", *["scontrol"] * 5, "squeue"]
    assert calls[0][-1] == SACCT_FORMAT and "--duplicates" in calls[0]
    for job_id, array in (("7", None), ("13", 3)):
        record_job(tmp_path, {"job_id": job_id, "kind": "extract", "array": array})
    assert state.active_jobs(tmp_path) == {"13": "PENDING"}


def test_jobs_output_keeps_its_lines(monkeypatch, tmp_path, capsys):
    from ssl_video.slurm.jobs import record_job

    record_job(tmp_path, {"job_id": "21", "kind": "extract", "submitted": "2026-11-30T14:09:31+0000", "array": 2})
    sources = {"sacct": "21_1|COMPLETED|0:0|00:00:06\n",
               "scontrol": scontrol_record(22, "COMPLETED", (21, "0"), run_time="00:00:04")}
    monkeypatch.setattr(state, "_run", lambda command: sources.get(command[0]))
    assert main(["jobs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  job 21 [extract]: COMPLETED, requeued 0 time(s), elapsed 00:00:04, exit 0:0; submitted "
        "2026-11-30T14:09:31+0000", "    array tasks: 0 COMPLETED, 1 COMPLETED"]


def test_slurm_modules_import_neither_the_command_line_nor_each_other_in_a_cycle():
    import ast

    folder = ROOT / "ssl_video" / "slurm"
    imports = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        imports[path.stem] = names
    for module, names in imports.items():
        assert not any(n == "ssl_video.cli" or n.startswith("ssl_video.cli.") for n in names), module
    assert "ssl_video.slurm.status" not in imports["submit"] and "ssl_video.slurm.submit" not in imports["status"]
    for module, names in imports.items():
        for other in names:
            if other.startswith("ssl_video.slurm.") and other.split(".")[2] in imports:
                assert f"ssl_video.slurm.{module}" not in imports[other.split(".")[2]], (module, other)


def test_a_command_task_runs_the_entry_point_it_was_given(monkeypatch, tmp_path):
    import os
    import pickle

    import cloudpickle

    from ssl_video.slurm import IN_JOB_ENV
    from ssl_video.slurm.tasks import CommandTask

    seen = []

    def entry(argv):
        seen.append((argv, IN_JOB_ENV in os.environ, Path.cwd()))
        return 0

    monkeypatch.setenv(IN_JOB_ENV, "")  # recorded first, so what the task sets is undone after the test
    monkeypatch.delenv(IN_JOB_ENV)  # (it used to leak: every later --slurm command then ran in-process)
    monkeypatch.chdir(ROOT)
    task = CommandTask(entry, ["extract", "--out", "x.h5"], str(tmp_path))
    assert task("1/2") == 0 and task() == 0
    assert seen == [(["extract", "--out", "x.h5", "--shard", "1/2"], True, tmp_path),
                    (["extract", "--out", "x.h5"], True, tmp_path)]
    # what submitit pickles: the command line's main travels as a reference by name
    data = cloudpickle.dumps(CommandTask(main, ["jobs"], str(tmp_path)))
    assert b"ssl_video.cli" in data and pickle.loads(data).entry is main


def test_install_script_fails_in_ci_only(tmp_path):
    """Without the Slurm packages and unable to install them, the script exits 0 (the tests skip) except
    under CI=true, where it exits 1."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"id": "echo 0", "apt-get": "exit 100", "tee": "cat >/dev/null", "chmod": ":",
                       "rm": ":"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = ROOT / "tests" / "slurm" / "install.sh"
    for ci, code in (("", 0), ("true", 1), ("false", 0)):
        env = {"PATH": str(bin_dir), "CI": ci, "HOME": str(tmp_path)}
        out = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, env=env)
        assert out.returncode == code, (ci, out.stderr)
        assert "could not install" in out.stderr
    (bin_dir / "apt-get").unlink()
    out = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True,
                         env={"PATH": str(bin_dir), "CI": "true"})
    assert out.returncode == 1 and "no apt-get" in out.stderr


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
    assert submit_command(args, ["extract", "--out", "x.h5", "--slurm", str(LOCAL), "--array", "3"], main) == 0
    options = sbatch_options(capsys.readouterr().out)
    assert options["array"] == "0-2%3" and options["job-name"] == "ssl-video-extract"
    assert options["output"] == f"{tmp_path / 'job'}/slurm/%A_%a_0_log.out"
    with pytest.raises(Exception, match="--array must be at least 1"):
        submit_command(Namespace(**{**vars(args), "array": 0}), ["extract"], main)


def test_jobs_without_submissions(tmp_path, capsys):
    assert main(["jobs", "--root", str(tmp_path)]) == 0
    assert "no submitted jobs under" in capsys.readouterr().out
    assert main(["jobs", str(tmp_path)]) == 2
    assert main(["jobs", "cancel"]) == 2
