"""A real one-node Slurm cluster for tests: Debian's slurm-wlm and munge, started as root.

Everything is private to one temporary directory: its own munged (own key and socket, slurm.conf
points at it with AuthInfo), its own slurm.conf (given to every client through SLURM_CONF, which
jobs inherit), state and spool directories and free TCP ports, so it touches no system-wide
Slurm or munge and two test runs do not collide. ``stop()`` cancels the jobs and ends every
daemon it started, also after a failure (from /work/shared/recipes/slurm-single-node.sh: no
systemd, no cgroups, linuxproc process tracking).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = "slurm-wlm munge"   # deps/apt.txt; `make setup` installs them
CPUS = 4                       # declared (config_overrides): more ranks than this 2-core machine
GPUS = 2                       # generic resources gpu:2 on placeholder files: jobs may ask for
                               # GPUs (sbatch --gpus-per-node), Slurm schedules them, none exist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a Slurm cluster needs root (slurmd and munged run as root/munge)"
    gone = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(
        c, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if gone:
        return (f"{', '.join(gone)} not installed: run `make setup` (deps/apt.txt lists "
                f"{PACKAGES})")
    return None


class SlurmCluster:
    def __init__(self, base: str | None = None):
        # Under /tmp, not pytest's tmp_path: munged refuses a socket in a directory others
        # cannot traverse, and pytest's base directory is mode 0700.
        self.dir = Path(tempfile.mkdtemp(prefix="emews-slurm-", dir=base))
        self.dir.chmod(0o755)
        self.conf = self.dir / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.host = socket.gethostname()
        self.pids: dict[str, int] = {}

    # ---- start -------------------------------------------------------------------------------
    def start(self) -> "SlurmCluster":
        try:
            self._munge()
            self._config()
            for d in ("state", "spool", "log"):
                (self.dir / d).mkdir()
            for daemon in ("slurmctld", "slurmd"):
                subprocess.run([daemon], env=self.env, check=True, timeout=30,
                               capture_output=True)
                self.pids[daemon] = self._pid(self.dir / f"{daemon}.pid")
            deadline = time.time() + 30
            while time.time() < deadline:
                p = self.run("sinfo", "-h", "-o", "%T", check=False)
                if p.stdout.strip() in ("idle", "mixed", "allocated"):
                    return self
                time.sleep(0.2)
            raise RuntimeError(f"the Slurm node did not come up in 30 s: {self.logs()}")
        except BaseException:
            self.stop()
            raise

    def _munge(self) -> None:
        key, run = self.dir / "munge", self.dir / "munge-run"
        key.mkdir(mode=0o700)
        run.mkdir(mode=0o755)
        (key / "munge.key").write_bytes(os.urandom(1024))
        (key / "munge.key").chmod(0o400)
        for p in (key, key / "munge.key", run):
            shutil.chown(p, "munge", "munge")
        self.munge_socket = run / "munge.sock"
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                        f"--socket={self.munge_socket}", f"--key-file={key / 'munge.key'}",
                        f"--pid-file={run / 'munged.pid'}", f"--log-file={key / 'munged.log'}",
                        f"--seed-file={key / 'munged.seed'}"],
                       check=True, timeout=30, capture_output=True)
        self.pids["munged"] = self._pid(run / "munged.pid")

    def _config(self) -> None:
        d = self.dir
        for i in range(GPUS):
            (d / f"gpu{i}").write_text("")
        (d / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={d}/gpu[0-{GPUS - 1}]\n")
        self.conf.write_text(f"""\
ClusterName=emewstest
GresTypes=gpu
SlurmctldHost={self.host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# sacct needs slurmdbd (a database); the job completion log keeps the same final record per job
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
# SIGTERM at the time limit or scancel, SIGKILL this many seconds later (default 30)
KillWait=15
NodeName={self.host} CPUs={CPUS} RealMemory=4000 Gres=gpu:{GPUS} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")

    @staticmethod
    def _pid(path: Path) -> int:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        raise RuntimeError(f"no pid file {path}")

    # ---- use ---------------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                              timeout=30, check=check)

    def state(self, job: str) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, CANCELLED, ...), '' once forgotten."""
        p = self.run("scontrol", "-o", "show", "job", job, check=False)
        for word in p.stdout.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return ""

    def completion(self, job: str) -> dict[str, str]:
        """The job's record in the completion log (JobState, StartTime, EndTime, TimeLimit...),
        what sacct shows on a cluster with accounting; {} until the job has ended."""
        try:
            lines = (self.dir / "log" / "jobcomp.txt").read_text().splitlines()
        except OSError:
            return {}
        for ln in lines:
            rec = dict(w.split("=", 1) for w in ln.split() if "=" in w)
            if rec.get("JobId") == job:
                return rec
        return {}

    def wait_done(self, job: str, limit: float) -> str:
        """Wait until the job has left the node; its final state."""
        deadline = time.time() + limit
        while time.time() < deadline:
            st = self.state(job)
            if st not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"):
                return st
            time.sleep(0.3)
        raise TimeoutError(f"Slurm job {job} still {self.state(job)} after {limit:.0f} s")

    def logs(self) -> str:
        out = []
        for f in sorted((self.dir / "log").glob("*.log")):
            out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace")
                                                    .splitlines()[-15:]))
        return "\n".join(out)

    # ---- stop --------------------------------------------------------------------------------
    def _ours(self) -> list[int]:
        """slurmstepd processes of this cluster (they carry its SLURM_CONF)."""
        mine = f"SLURM_CONF={self.conf}".encode()
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if (d / "comm").read_text().strip() == "slurmstepd" and \
                        mine in (d / "environ").read_bytes().split(b"\0"):
                    found.append(int(d.name))
            except OSError:
                pass
        return found

    def stop(self) -> None:
        """Cancel every job, stop the daemons this cluster started, remove its directory."""
        if "slurmctld" in self.pids:
            try:
                self.run("scancel", "--user", "root", check=False)
                deadline = time.time() + 20
                while time.time() < deadline and self.run(
                        "squeue", "-h", check=False).stdout.strip():
                    time.sleep(0.3)
            except subprocess.TimeoutExpired:
                pass
        for name in ("slurmd", "slurmctld"):
            if name in self.pids:
                _terminate(self.pids.pop(name))
        for pid in self._ours():   # a job step the daemons left behind
            _terminate(pid)
        if "munged" in self.pids:
            _terminate(self.pids.pop("munged"))
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie nobody reaps (the daemons' parent is init)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(pid: int, grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return
