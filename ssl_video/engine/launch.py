"""Start N processes of one distributed job on this machine (DDP: gloo on the CPU, NCCL on GPUs).

Each child gets the environment ``torch.distributed``/Accelerate read (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). SIGTERM and SIGUSR2 sent to the
launcher are passed on to every child (so they checkpoint and stop together); on Linux a child also gets
SIGTERM when the launcher dies without passing anything on (SIGKILL). When a child fails, the
others get ``grace_s`` seconds to finish, then SIGTERM, then SIGKILL. The exit code is 0 when every child
succeeded, otherwise that of the first child to fail (128 + N for a child killed by signal N).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from ssl_video.threads import configure_environment, plan_threads

__all__ = ["free_port", "launch_local", "child_env"]

FORWARDED = (signal.SIGTERM, signal.SIGUSR2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(rank: int, nproc: int, port: int, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
        "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    })
    # share the CPUs this process may use instead of oversubscribing them; idle threads sleep
    configure_environment(plan_threads(processes=nproc), env)
    return env


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the launcher dies (nothing elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def launch_local(command: list[str], nproc: int, grace_s: float = 30.0) -> int:
    """Run ``command`` as ``nproc`` ranks of one job; returns the job's exit code."""
    port = free_port()
    children = [subprocess.Popen(command, env=child_env(rank, nproc, port), preexec_fn=_die_with_parent)
                for rank in range(nproc)]

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    first_failure: int | None = None
    failed_at = None
    try:
        while any(child.poll() is None for child in children):
            for child in children:
                code = child.poll()
                if code not in (None, 0) and first_failure is None:
                    first_failure, failed_at = _code(code), time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                _stop(children)
            time.sleep(0.1)
    except KeyboardInterrupt:  # the children got the same Ctrl-C from the terminal
        _stop(children, wait_s=10.0)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if first_failure is None:
        codes = [_code(child.returncode) for child in children]
        first_failure = next((c for c in codes if c != 0), None)
    return first_failure or 0


def _stop(children: list[subprocess.Popen], wait_s: float = 10.0) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + wait_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
