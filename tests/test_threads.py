"""Thread planning for shared CPUs (ssl_video.threads)."""

from __future__ import annotations

import subprocess
import sys

from ssl_video import threads


def test_cgroup_quota_is_read_in_cpus(tmp_path):
    # catches: the quota read as the period (or the two swapped), "max" taken as a number
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(cpu_max) == 1.5
    assert threads.available_cpus(cpu_max) <= 2
    cpu_max.write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(cpu_max) is None
    assert threads.cgroup_cpu_limit(tmp_path / "missing") is None


def test_plan_counts_processes_and_loader_workers():
    # catches: loader workers ignored (or each taking a whole CPU), processes not sharing the CPUs
    assert threads.plan_threads(0, cpus=2).threads == 2
    assert threads.plan_threads(1, cpus=2).threads == 2
    assert threads.plan_threads(2, cpus=2).threads == 1
    assert threads.plan_threads(4, cpus=8).threads == 6
    assert threads.plan_threads(0, cpus=8, processes=4).threads == 2
    assert threads.plan_threads(8, cpus=2).threads == 1
    assert threads.plan_threads(0, cpus=2).wait_policy == "PASSIVE"


def test_environment_keeps_user_values_and_replaces_its_own():
    # catches: a user's OMP_NUM_THREADS overwritten; an earlier plan's value never updated
    env = {"OMP_NUM_THREADS": "3"}
    threads.configure_environment(threads.plan_threads(0, cpus=2), env)
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    env = {}
    threads.configure_environment(threads.plan_threads(0, cpus=2), env)
    threads.configure_environment(threads.plan_threads(2, cpus=2), env)
    assert env["OMP_NUM_THREADS"] == "1"


def test_cli_sets_the_wait_policy_before_torch_starts():
    # catches: the handler importing torch (or the package importing it) before the environment is set
    code = ("import os, sys\nfrom ssl_video.threads import configure\nconfigure()\n"
            "assert 'torch' not in sys.modules\nimport torch\nprint(os.environ['OMP_WAIT_POLICY'], "
            "torch.get_num_threads() == int(os.environ['OMP_NUM_THREADS']))")
    # nothing the runtimes read exported (an in-process `pretrain` of an earlier test exports MKL_NUM_THREADS)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("OMP_", "MKL_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.split() == ["PASSIVE", "True"]
