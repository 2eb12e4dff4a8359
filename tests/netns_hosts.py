"""Two "hosts" on one machine for multi-host tests: network namespaces joined by a veth pair.

Each host is a network namespace with its own address, its own hostname (a UTS namespace per
process started in it) and its own ``/etc/hosts`` (``ip netns exec`` bind-mounts
``/etc/netns/NAME/hosts``) naming both hosts; the file system is the machine's, so both hosts see
the same run directory, as the nodes of a cluster see a shared one. ``nsrsh`` (written into a
temporary directory) is the "remote shell" MPICH's hydra launches its proxies with, as it would
use ssh: ``nsrsh [-x] HOST CMD...`` runs CMD through ``sh -c`` inside namespace HOST with hostname
HOST.

The addresses exist only inside the namespaces. Never connect to them from the root namespace:
there they are not routed to these namespaces and the traffic would leave the machine. Every
client of a server started here runs inside a namespace (``Hosts.run``).

Names are unique per process (``ema<pid>``, ``emb<pid>``), so concurrent test runs cannot clash,
and ``down()`` kills whatever still runs in the namespaces before deleting them. Needs root and
``ip``/``unshare``; ``unavailable()`` says why not, for a skip.

By hand::

    python tests/netns_hosts.py   # brings two hosts and PostgreSQL up, prints them, waits for Enter
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_PORT = 5432            # inside host a's namespace: nothing else listens there
PG_PASSWORD = "emews-netns"


def unavailable() -> str | None:
    """Why two namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "runuser"):
        if not shutil.which(tool):
            return f"`{tool}` is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {p.stderr.strip()}")
    return p


class Hosts:
    """Hosts ``a`` and ``b`` (their names: ``self.a``, ``self.b``), up after ``up()``."""

    def __init__(self, tag: str | None = None):
        tag = tag or str(os.getpid())
        self.a, self.b = f"ema{tag}", f"emb{tag}"
        # A subnet of its own per tag: not needed for isolation (each namespace routes alone),
        # but it keeps two concurrent runs apart in any log.
        net = 20 + int(tag) % 200 if tag.isdigit() else 20
        self.addr = {self.a: f"10.231.{net}.1", self.b: f"10.231.{net}.2"}
        self.subnet = f"10.231.{net}.0/24"
        self.bindir = Path(tempfile.mkdtemp(prefix="emews-netns-"))
        self.nsrsh = self.bindir / "nsrsh"
        self.made: list[str] = []

    def up(self) -> "Hosts":
        sweep()
        try:
            for n in (self.a, self.b):
                _ip("netns", "add", n)
                self.made.append(n)
            va, vb = f"v{self.a}"[:15], f"v{self.b}"[:15]
            _ip("link", "add", va, "netns", self.a, "type", "veth", "peer", "name", vb, "netns",
                self.b)
            for n, v in ((self.a, va), (self.b, vb)):
                _ip("-n", n, "addr", "add", f"{self.addr[n]}/24", "dev", v)
                _ip("-n", n, "link", "set", "lo", "up")
                _ip("-n", n, "link", "set", v, "up")
                etc = Path("/etc/netns") / n
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
                    f"{ip} {h}\n" for h, ip in self.addr.items()))
            # The veth says "running" about 0.8 s after `link set up`; MPI started before that
            # cannot connect ("Destination is unreachable").
            for n, v in ((self.a, va), (self.b, vb)):
                self._wait_running(n, v)
            self.nsrsh.write_text(
                "#!/bin/bash\n"
                "# hydra's remote shell: nsrsh [-x] HOST CMD... runs CMD as ssh would (one shell\n"
                "# command line) inside namespace HOST, with hostname HOST.\n"
                "while [[ $1 == -* ]]; do shift; done; h=$1; shift\n"
                'exec ip netns exec "$h" unshare --uts sh -c "hostname $h; exec $*"\n')
            self.nsrsh.chmod(0o755)
            return self
        except BaseException:
            self.down()
            raise

    def _wait_running(self, ns: str, dev: str, timeout: float = 10) -> None:
        # IFF_RUNNING from SIOCGIFFLAGS, asked inside the namespace (as the recipe measured it)
        code = ("import fcntl, socket, struct, sys, time\n"
                "s = socket.socket()\n"
                "for _ in range(int(float(sys.argv[2]) * 10)):\n"
                "    req = struct.pack('16sH', sys.argv[1].encode(), 0)\n"
                "    if struct.unpack('16sH', fcntl.ioctl(s.fileno(), 0x8913, req))[1] & 0x40:\n"
                "        sys.exit(0)\n"
                "    time.sleep(0.1)\n"
                "sys.exit(1)\n")
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, dev,
                            str(timeout)], capture_output=True, text=True, timeout=timeout + 20)
        if p.returncode != 0:
            raise RuntimeError(f"the veth {dev} in namespace {ns} did not come up in {timeout} s"
                               f" {p.stderr.strip()}")

    def argv(self, host: str, cmd: list[str]) -> list[str]:
        """``cmd`` (a list of words, no shell) run inside ``host`` with its hostname."""
        return ["ip", "netns", "exec", host, "unshare", "--uts", "sh", "-c",
                'hostname "$1" && shift && exec "$@"', "sh", host, *map(str, cmd)]

    def run(self, host: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.argv(host, cmd), **kw)

    def pids(self, host: str) -> list[int]:
        p = _ip("netns", "pids", host, check=False)
        return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []

    def down(self) -> None:
        """Kill what still runs in the namespaces (ours: their names are unique), delete them
        (their veth goes with them) and their /etc/netns files. Safe to call twice."""
        for n in self.made:
            for _ in range(3):
                pids = [p for p in self.pids(n) if p != os.getpid()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
            _ip("netns", "del", n, check=False)
            shutil.rmtree(Path("/etc/netns") / n, ignore_errors=True)
        self.made = []
        shutil.rmtree(self.bindir, ignore_errors=True)


def sweep() -> None:
    """Tear down the hosts of earlier test runs whose process is gone (killed before its own
    teardown): only names this module makes, ``ema<pid>``/``emb<pid>``."""
    import re
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(r"em[ab](\d+)\b", line)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            old = Hosts(m.group(1))
            old.made = [line.split()[0]]
            old.down()


class NetnsPostgres:
    """PostgreSQL listening on ``host``'s address only (port 5432 of that namespace), with
    password authentication for the hosts' subnet; ``url`` is for clients inside the hosts."""

    def __init__(self, hosts: Hosts, host: str, dbname: str = "emews"):
        self.hosts, self.host, self.dbname = hosts, host, dbname
        self.bindir = self._bindir()
        self.dir: Path | None = None
        self.started = False

    @staticmethod
    def _bindir() -> Path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from pg_server import find_bindir  # the project's own lookup of initdb/pg_ctl
        return find_bindir()

    @property
    def url(self) -> str:
        return (f"postgresql+psycopg2://emews:{PG_PASSWORD}@{self.hosts.addr[self.host]}:"
                f"{PG_PORT}/{self.dbname}")

    def _as_postgres(self, cmd: list, inside: bool) -> subprocess.CompletedProcess:
        words = ["runuser", "-u", "postgres", "--", *map(str, cmd)]
        argv = ["ip", "netns", "exec", self.host, *words] if inside else words
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                           cwd=self.dir, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace")[-2000:] \
                if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stdout}{p.stderr}{log}")
        return p

    def start(self) -> "NetnsPostgres":
        import pwd
        pw = pwd.getpwnam("postgres")
        # /tmp, not pytest's tmp_path (mode 700 under root: postgres could not enter it)
        self.dir = Path(tempfile.mkdtemp(prefix="emews-netns-pg-", dir="/tmp"))
        try:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            data = self.dir / "data"
            self._as_postgres([self.bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync"], inside=False)
            # trust on the server's own socket only; the hosts' subnet must give the password
            (data / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"host all all {self.hosts.subnet} scram-sha-256\n")
            os.chown(data / "pg_hba.conf", pw.pw_uid, pw.pw_gid)
            self._as_postgres([self.bindir / "pg_ctl", "-D", data, "-l", self.dir / "log", "-w",
                               "-t", "60", "-o",
                               f"-c listen_addresses={self.hosts.addr[self.host]} -p {PG_PORT} "
                               f"-c unix_socket_directories={self.dir} -c fsync=off "
                               f"-c synchronous_commit=off -c full_page_writes=off", "start"],
                              inside=True)
            self.started = True
            self._as_postgres([self.bindir / "psql", "-q", "-h", self.dir, "-p", PG_PORT,
                               "-U", "postgres", "-d", "postgres",
                               "-c", f"create role emews login password '{PG_PASSWORD}'",
                               "-c", f"create database {self.dbname} owner emews"], inside=True)
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.dir is None:
            return
        if self.started:
            try:
                self._as_postgres([self.bindir / "pg_ctl", "-D", self.dir / "data", "-m",
                                   "immediate", "-w", "-t", "20", "stop"], inside=True)
            except (RuntimeError, subprocess.SubprocessError):
                pass   # Hosts.down() kills whatever is left in the namespace
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(f"cannot make namespace hosts here: {why}")
    h = Hosts().up()
    pg = None
    try:
        pg = NetnsPostgres(h, h.a).start()
        print(f"hosts {h.a} {h.addr[h.a]}, {h.b} {h.addr[h.b]}; nsrsh {h.nsrsh}; "
              f"store {pg.url} (clients inside the hosts only)")
        input("Enter to tear down: ")
    finally:
        if pg:
            pg.stop()
        h.down()
