"""A single-node Slurm with accounting, started in a temporary directory (for the tests marked ``slurm``).

Daemons (munged, MariaDB, slurmdbd, slurmctld, slurmd) run as root from the Debian packages that
``tests/slurm/install.sh`` installs; every file they write (keys, sockets, databases, state, spool, logs,
pid files) is under the directory given, ports are free ones picked at start, and clients find the cluster
through ``SLURM_CONF``: nothing in /etc is used or changed. The node is ``localhost`` (127.0.0.1) with
every CPU of the machine and 4000 MB. Each daemon is stopped by its pid at the end.

    python tests/slurm/cluster.py start /tmp/cluster   # prints `export SLURM_CONF=...`
    python tests/slurm/cluster.py stop /tmp/cluster
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch", "sacct",
           "sacctmgr", "scontrol", "squeue", "srun")
CLUSTER = "sslvideo"
KILL_WAIT_S = 30  # SIGTERM -> SIGKILL: time for a stopped training job to finish its step and save
PARTITION = "debug"
# stopped in this order (the reverse of starting)
PID_FILES = ("slurmd.pid", "slurmctld.pid", "slurmdbd.pid", "mariadb.pid", "munge/munged.pid")


class ClusterError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why this machine cannot run the test cluster (None: it can)."""
    if sys.platform != "linux":
        return "a local Slurm needs Linux"
    if os.geteuid() != 0:
        return "starting Slurm daemons needs root"
    missing = [name for name in DAEMONS if shutil.which(name) is None
               and not Path("/usr/sbin", name).exists()]
    if missing:
        return (f"Slurm packages missing ({', '.join(missing)}): run tests/slurm/install.sh "
                "(apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server)")
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, ready, timeout: float, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.is_file():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise ClusterError(f"{what} did not start within {timeout:.0f} s{tail}")


def _run(args: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if check and out.returncode != 0:
        raise ClusterError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return out


class Cluster:
    """A running test cluster; ``env`` is the environment clients need (``SLURM_CONF``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    # ------------------------------------------------------------------------------------------ start

    def start(self, timeout: float = 60.0) -> Cluster:
        for sub in ("munge", "db", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        try:
            self._start_munge()
            db_port = self._start_mariadb(timeout)
            self._write_configs(db_port)
            self._start(["slurmdbd"], "slurmdbd.pid", "log/slurmdbd.log", timeout,
                        ready=lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]))
            _run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=self.env)
            self._start(["slurmctld"], "slurmctld.pid", "log/slurmctld.log", timeout,
                        ready=lambda: self._ok(["scontrol", "ping"]))
            self._start(["slurmd", "-N", "localhost"], "slurmd.pid", "log/slurmd.log", timeout,
                        ready=self._node_idle)
        except BaseException:
            self.stop()
            raise
        return self

    def _ok(self, args: list[str]) -> bool:
        return _run(args, env=self.env, check=False).returncode == 0

    def _node_idle(self) -> bool:
        out = _run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, check=False)
        return out.returncode == 0 and out.stdout.strip().rstrip("*") in ("idle", "mixed", "allocated")

    def _start(self, args: list[str], pid_file: str, log: str, timeout: float, ready) -> None:
        _run([_tool(args[0]), *args[1:]], env=self.env)
        _wait(args[0], lambda: (self.root / pid_file).is_file() and ready(), timeout, self.root / log)

    def _start_munge(self) -> None:
        folder = self.root / "munge"
        os.chmod(folder, 0o755)
        key = folder / "munge.key"
        if not key.is_file():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        _run([_tool("munged"), "--force", f"--socket={folder / 'munge.socket'}", f"--key-file={key}",
              f"--log-file={folder / 'munged.log'}", f"--pid-file={folder / 'munged.pid'}",
              f"--seed-file={folder / 'munged.seed'}"])
        _wait("munged", (folder / "munge.socket").exists, 10, folder / "munged.log")

    def _start_mariadb(self, timeout: float) -> int:
        data, log = self.root / "db", self.root / "log" / "mariadb.log"
        if not (data / "mysql").is_dir():
            _run([_tool("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                  "--auth-root-authentication-method=normal", "--skip-test-db"])
        port, sock = _free_port(), self.root / "mariadb.sock"
        # detached from this process group, so that Ctrl-C in a test run does not stop it half-way
        subprocess.Popen([_tool("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
                          "--bind-address=127.0.0.1", f"--port={port}", f"--socket={sock}",
                          f"--pid-file={self.root / 'mariadb.pid'}", f"--log-error={log}",
                          "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait("mariadbd", lambda: sock.exists() and (self.root / "mariadb.pid").is_file(), timeout, log)
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-test'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
        _run([_tool("mariadb"), "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql])
        return port

    def _write_configs(self, db_port: int) -> None:
        r = self.root
        munge = r / "munge" / "munge.socket"
        dbd_port, ctld_port, slurmd_port = _free_port(), _free_port(), _free_port()
        dbd = r / "slurmdbd.conf"
        dbd.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={munge}", "DbdHost=localhost", "DbdAddr=127.0.0.1",
            f"DbdPort={dbd_port}", "SlurmUser=root", f"LogFile={r}/log/slurmdbd.log", f"PidFile={r}/slurmdbd.pid",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={db_port}",
            "StorageUser=slurm", "StoragePass=slurm-test", "StorageLoc=slurm_acct_db", ""]))
        os.chmod(dbd, 0o600)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text("\n".join([
            f"ClusterName={CLUSTER}", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={munge}", "CredType=cred/munge",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "MpiDefault=none", "MailProg=/bin/true", "ReturnToService=2",
            f"KillWait={KILL_WAIT_S}", "SchedulerParameters=sched_interval=1", "MessageTimeout=30",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={dbd_port}",
            f"AccountingStoragePass={munge}",  # the munge socket for slurmdbd connections
            "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=4000 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))

    # ------------------------------------------------------------------------------------------ use

    def run(self, *args: str, check: bool = True) -> str:
        return _run(list(args), env=self.env, check=check).stdout

    def release(self, job_id: str, timeout: float = 60.0) -> None:
        """Start a requeued job now (Slurm holds it for about 2 minutes: BeginTime).

        The controller sets that begin time while it finishes the requeue, which can be after the job already
        shows as pending: a StartTime=now given before it is overwritten, and the job then waits minutes. So
        the update is repeated until the controller no longer holds the job for its begin time."""
        deadline = time.time() + timeout
        while True:
            self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
            time.sleep(1.0)
            show = self.run("scontrol", "show", "job", "--oneliner", job_id, check=False)
            if "JobState=PENDING" not in show or "Reason=BeginTime" not in show or time.time() > deadline:
                return

    # ------------------------------------------------------------------------------------------ stop

    def stop(self, timeout: float = 20.0) -> None:
        """Cancel every job and wait for them to end (their processes get SIGKILL after KillWait), then stop
        every daemon by its pid file."""
        if self.conf.is_file() and (self.root / "slurmctld.pid").is_file():
            _run(["scancel", f"--user={os.getuid()}"], env=self.env, check=False)
            deadline = time.time() + KILL_WAIT_S + 30
            while time.time() < deadline:
                out = _run(["squeue", "--noheader"], env=self.env, check=False)
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(0.5)
        for name in PID_FILES:
            path = self.root / name
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
                continue
            deadline = time.time() + timeout
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child) is gone for our purpose
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__)
        return 2
    reason = unavailable_reason()
    if reason and argv[0] == "start":
        print(f"cannot start a test cluster here: {reason}", file=sys.stderr)
        return 1
    cluster = Cluster(argv[1])
    if argv[0] == "start":
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
