"""A real single-node Slurm cluster with accounting, for the tests that submit the workflow to it.

Debian 12's Slurm 22.05: slurmctld, slurmd, and slurmdbd on MariaDB, authenticated by munge. There
is no systemd on the test machines, so each daemon is started directly, with its own socket, port,
pid file and log under one state directory, and stopped by the pid it recorded. The directory has
a fixed place, so that daemons left by a session that was killed are found by their pid files and
stopped before a new cluster starts; a lock keeps two sessions apart.

The configs go where Slurm looks by default, /etc/slurm, as on a real cluster: the `srun` that the
plugin's job step runs inside each job finds them nowhere else (the step drops SLURM_CONF from its
environment). They carry a mark, so that a machine's own Slurm config is never overwritten.

The node offers two stand-in GPUs (gres `gpu` on /dev/null and /dev/zero): Slurm counts them and
hands them to jobs that ask, and accounting records it, while `device: auto` finds no CUDA and
computes on the CPU.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATE = Path(tempfile.gettempdir()) / "nowrongturns-slurm"
CONFIG_DIR = Path("/etc/slurm")
CONFIGS = ("slurm.conf", "gres.conf", "slurmdbd.conf")
MARK = "# Written by the tests of nowrongturns (tests/helpers/slurm.py), removed when they end.\n"
CLUSTER = "nwt"
PARTITION = "gpu"  # the partition that workflow/profiles/slurm names
# Daemons in the order they start; each records its pid in run/<name>.pid.
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
STARTUP_SECONDS = 60
STOP_SECONDS = 20


@dataclass(frozen=True)
class SlurmJob:
    """One row of `sacct`: a Slurm job of a workflow run."""

    job_id: str
    state: str
    comment: str  # the plugin's `rule_<rule>_wildcards_<values joined by _>`
    alloc_tres: str  # what Slurm allocated: cpu=1,gres/gpu=1,mem=2000M,...


class SlurmCluster:
    """slurmctld, slurmd and slurmdbd on this machine, with a single partition on one node."""

    def __init__(self):
        self.state = STATE
        self.run_dir = STATE / "run"  # sockets and pid files
        self.log_dir = STATE / "log"
        self._lock = None
        self._mariadbd = None

    # -- set-up and tear-down ------------------------------------------------------------------

    def start(self) -> None:
        self._lock = open(f"{self.state}.lock", "w")
        _lock_within(self._lock, seconds=600)  # another session's cluster test ends first
        self._stop_daemons()  # left by a session that was killed
        shutil.rmtree(self.state, ignore_errors=True)
        for folder in ("run", "log", "munge", "mariadb", "ctld", "spool"):
            (self.state / folder).mkdir(parents=True)
        self.state.chmod(0o755)
        self.run_dir.chmod(0o755)  # munged wants its socket's directory open to all
        (self.state / "munge").chmod(0o700)  # and its key's directory closed to all but root
        ports = _free_ports(4)
        self._write_configs(*ports)
        self._start_munged()
        self._start_mariadbd(ports[3])
        self._start_slurmdbd()
        self._start_slurmctld()
        self._start_slurmd()

    def stop(self) -> None:
        """Cancel what still runs, stop every daemon by its pid file, release the lock."""
        try:
            if self._alive("slurmctld"):
                self.command("scancel", f"--user={getpass.getuser()}")
                _wait_for(
                    "the cancelled jobs to end",
                    lambda: not self.command("squeue", "--noheader").strip(),
                    seconds=STOP_SECONDS,
                )
        finally:
            self._stop_daemons()
            # The logs stay, for a look after a failure; the database (100 MB) goes.
            shutil.rmtree(self.state / "mariadb", ignore_errors=True)
            for name in CONFIGS:
                if ours(CONFIG_DIR / name):
                    (CONFIG_DIR / name).unlink()
            if self._lock:
                self._lock.close()

    def _write_configs(self, slurmctld_port, slurmd_port, slurmdbd_port, mariadb_port) -> None:
        host = socket.gethostname().split(".")[0]  # what slurmd calls its node
        munge_socket = self.run_dir / "munged.socket"
        user = getpass.getuser()
        CONFIG_DIR.mkdir(exist_ok=True)
        (CONFIG_DIR / "slurm.conf").write_text(
            MARK
            + f"""\
ClusterName={CLUSTER}
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmctldPort={slurmctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={self.state / "ctld"}
SlurmdSpoolDir={self.state / "spool"}
SlurmctldPidFile={self._pid_file("slurmctld")}
SlurmdPidFile={self._pid_file("slurmd")}
SlurmctldLogFile={self.log_dir / "slurmctld.log"}
SlurmdLogFile={self.log_dir / "slurmd.log"}
# No cgroups in the test machines' containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# Accounting through slurmdbd, as real clusters run: the plugin asks `sacct` for job states.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={slurmdbd_port}
AccountingStoragePass={munge_socket}
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
# The node's size is what this file says, whatever the machine has.
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        # Two stand-in GPUs: device files that exist, which no job uses.
        (CONFIG_DIR / "gres.conf").write_text(
            MARK
            + f"NodeName={host} Name=gpu File=/dev/null\nNodeName={host} Name=gpu File=/dev/zero\n"
        )
        dbd_conf = CONFIG_DIR / "slurmdbd.conf"
        dbd_conf.write_text(
            MARK
            + f"""\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={slurmdbd_port}
SlurmUser={user}
PidFile={self._pid_file("slurmdbd")}
LogFile={self.log_dir / "slurmdbd.log"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mariadb_port}
StorageUser=slurm
StorageLoc=slurm_acct_db
"""
        )
        dbd_conf.chmod(0o600)  # slurmdbd refuses a config others can read

    def _start_munged(self) -> None:
        key = self.state / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, timeout=30)
        self._daemon(
            "munged",
            "munged",
            f"--key-file={key}",
            f"--socket={self.run_dir / 'munged.socket'}",
            f"--pid-file={self._pid_file('munged')}",
            f"--log-file={self.log_dir / 'munged.log'}",
            f"--seed-file={self.state / 'munge' / 'munged.seed'}",
        )

    def _start_mariadbd(self, port: int) -> None:
        datadir = self.state / "mariadb"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--user={getpass.getuser()}"]
            + [f"--datadir={datadir}", "--skip-test-db"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # mariadbd stays in the foreground: started in a session of its own, reaped at stop.
        # No grant tables: slurmdbd, the only client, may do anything, on 127.0.0.1 only.
        with open(self.log_dir / "mariadbd.out", "w") as out:
            self._mariadbd = subprocess.Popen(
                ["mariadbd", "--no-defaults", f"--user={getpass.getuser()}"]
                + [f"--datadir={datadir}", f"--socket={self.run_dir / 'mariadbd.socket'}"]
                + [f"--pid-file={self._pid_file('mariadbd')}", f"--port={port}"]
                + ["--bind-address=127.0.0.1", "--skip-grant-tables"]
                + ["--innodb-buffer-pool-size=64M", f"--log-error={self.log_dir / 'mariadbd.log'}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for("mariadbd to listen", lambda: _accepts(port), log=self.log_dir / "mariadbd.log")

    def _start_slurmdbd(self) -> None:
        self._daemon("slurmdbd", "slurmdbd")
        _wait_for(
            "slurmdbd to answer",
            lambda: self.answers("sacctmgr", "--noheader", "list", "cluster"),
            log=self.log_dir / "slurmdbd.log",
        )
        # The cluster, an account and the user's association, as AccountingStorageEnforce wants.
        for entity in (
            ["cluster", CLUSTER],
            ["account", CLUSTER, f"cluster={CLUSTER}"],
            ["user", getpass.getuser(), f"account={CLUSTER}", f"cluster={CLUSTER}"],
        ):
            self.command("sacctmgr", "--immediate", "add", *entity)

    def _start_slurmctld(self) -> None:
        self._daemon("slurmctld", "slurmctld")
        _wait_for(
            "slurmctld to answer",
            lambda: self.answers("scontrol", "ping"),
            log=self.log_dir / "slurmctld.log",
        )

    def _start_slurmd(self) -> None:
        self._daemon("slurmd", "slurmd")
        _wait_for(
            "the node to be idle",
            lambda: self.command("sinfo", "--noheader", "--format=%t").strip() == "idle",
            log=self.log_dir / "slurmd.log",
        )

    def _daemon(self, name: str, *command: str) -> None:
        """Start a daemon that forks into the background and records its pid."""
        out = self.log_dir / f"{name}.out"  # a file: a pipe could stay open in the daemon
        with open(out, "w") as handle:
            started = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=60)
        if started.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{out.read_text()}")
        _wait_for(f"{name} to record its pid", lambda: self._alive(name))

    def _stop_daemons(self) -> None:
        """Stop, in the reverse order of starting, each daemon that a pid file names."""
        for name in reversed(DAEMONS):
            pid_file = self._pid_file(name)
            pid = _recorded_pid(pid_file)
            if pid and _runs(pid, name):
                os.kill(pid, signal.SIGTERM)
                if name == "mariadbd" and self._mariadbd:
                    try:
                        self._mariadbd.wait(timeout=STOP_SECONDS)
                    except subprocess.TimeoutExpired:
                        self._mariadbd.kill()
                        self._mariadbd.wait()
                elif not _ends_within(pid, STOP_SECONDS):
                    os.kill(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)  # stale, or of a daemon stopped now

    # -- queries ------------------------------------------------------------------------------

    def command(self, *command: str) -> str:
        """A Slurm client command against this cluster; its standard output."""
        result = self._client(command)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def answers(self, *command: str) -> bool:
        """Whether a Slurm client command succeeds (its daemon is up)."""
        return self._client(command).returncode == 0

    def _client(self, command) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def jobs(self, job_name: str) -> list[SlurmJob]:
        """Every Slurm job of that name, as accounting recorded it (the plugin names the jobs
        of one workflow run by its run id)."""
        output = self.command(
            "sacct",
            "--allocations",
            "--parsable2",
            "--noheader",
            f"--name={job_name}",
            "--starttime=now-1days",
            "--format=JobIDRaw,State,Comment,AllocTRES",
        )
        return [SlurmJob(*line.split("|")) for line in output.splitlines()]

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _alive(self, name: str) -> bool:
        pid = _recorded_pid(self._pid_file(name))
        return bool(pid) and _runs(pid, name)


def remove_stale_configs() -> None:
    """Remove the configs a killed session left in /etc/slurm, where no session holds the lock
    (one that does runs its cluster on them). The Slurm plugin asks `scontrol show config` as
    every snakemake starts, and on a config whose slurmctld is gone that waits out its 10 s
    timeout, where with no config it fails at once."""
    if os.geteuid() != 0:  # only root writes them (slurm_cluster), and may remove them
        return
    with open(f"{STATE}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        for name in CONFIGS:
            if ours(CONFIG_DIR / name):
                (CONFIG_DIR / name).unlink()


def foreign_config() -> Path | None:
    """A Slurm config of this machine's own, which the test cluster must not replace."""
    path = CONFIG_DIR / "slurm.conf"
    return path if path.exists() and not ours(path) else None


def ours(config: Path) -> bool:
    return config.exists() and config.read_text().startswith(MARK)


def _recorded_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _runs(pid: int, name: str) -> bool:
    """Whether `pid` is a live process of that program (not a pid reused by another since)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    program, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return program == name[:15] and state != "Z"


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _wait_for(what: str, check, seconds: float = STARTUP_SECONDS, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"timed out after {seconds} s waiting for {what}\n{tail}")
        time.sleep(0.2)


def _lock_within(handle, seconds: float) -> None:
    def locked() -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    _wait_for(f"the lock on {handle.name}", locked, seconds=seconds)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
