"""A real, throwaway PostgreSQL server for tests (and for trying the store by hand).

``PostgresServer`` runs ``initdb`` into a fresh temporary directory, starts the server with
``pg_ctl`` listening only on 127.0.0.1 on a free port (trust authentication for loopback
connections only, the Unix socket inside the temporary directory), waits until it accepts
connections, creates a database, and on ``stop()`` shuts the server down and deletes the directory.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` system user (through ``runuser`` or ``su``) and the directory is handed to that user.

The binaries come from ``$EMEWS_PG_BINDIR``, else Debian's ``/usr/lib/postgresql/<ver>/bin``
(newest first), else ``pg_config --bindir``, else ``$PATH``. ``make setup`` installs them
(Debian package ``postgresql``, listed in deps/apt.txt).

By hand::

    .venv/bin/python tests/pg_server.py     # prints the URL, serves until Ctrl-C, cleans up
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

SETUP_HINT = ("Run `make setup` (it installs the Debian package 'postgresql' listed in "
              "deps/apt.txt), or point $EMEWS_PG_BINDIR at a directory holding initdb and pg_ctl.")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and how to fix it."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``."""
    cands: list[Path] = []
    if os.environ.get("EMEWS_PG_BINDIR"):
        cands.append(Path(os.environ["EMEWS_PG_BINDIR"]))

    def ver(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0
    cands += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=ver, reverse=True)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                cands.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        cands.append(Path(initdb).parent)
    for d in cands:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    looked = ", ".join(str(c) for c in cands) or "/usr/lib/postgresql/*/bin, pg_config, $PATH"
    raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) were not found "
                              f"(looked in: {looked}). {SETUP_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world_traversable(path: Path) -> bool:
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def new_database(server_url: str) -> str:
    """A new, empty database on the server behind ``server_url``; returns its URL."""
    import uuid

    from sqlalchemy import create_engine, text
    name = f"t_{uuid.uuid4().hex[:10]}"
    eng = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` -- a SQLAlchemy URL for database ``dbname``."""

    def __init__(self, dbname: str = "emews_test", user: str = "postgres"):
        self.dbname, self.user = dbname, user
        self.bindir = find_bindir()
        self.port: int | None = None
        self.tmp: Path | None = None
        self._as = ""                 # "runuser" or "su" when run as root (server runs as postgres)
        self._owner: tuple[int, int] | None = None
        self._started = False

    # ---- helpers -----------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.tmp / "data"

    @property
    def logfile(self) -> Path:
        return self.tmp / "server.log"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _exec(self, args: list, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program, as user postgres when we are root."""
        words = [str(a) for a in args]
        if self._as == "runuser":
            cmd = ["runuser", "-u", "postgres", "--", *words]
        elif self._as == "su":  # su takes one command string
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(shlex.quote, words))]
        else:
            cmd = words
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(self.tmp), stdin=subprocess.DEVNULL)

    def _check(self, what: str, p: subprocess.CompletedProcess) -> None:
        if p.returncode != 0:
            log = ""
            if self.logfile.exists():
                log = "\nserver log:\n" + self.logfile.read_text(errors="replace")[-3000:]
            raise PostgresUnavailable(f"{what} failed (exit {p.returncode}):\n{p.stdout[-2000:]}"
                                      f"{p.stderr[-2000:]}{log}")

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return  # run as ourselves
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root, and PostgreSQL refuses to run as root, but "
                                      "there is no 'postgres' system user to run it as. "
                                      + SETUP_HINT) from None
        if shutil.which("runuser"):
            self._as = "runuser"
        elif shutil.which("su"):
            self._as = "su"
        else:
            raise PostgresUnavailable("running as root and neither runuser nor su is available to "
                                      "start PostgreSQL as user 'postgres'.")
        self._owner = (pw.pw_uid, pw.pw_gid)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> "PostgresServer":
        try:
            return self._start(attempts)
        except BaseException:
            self.stop()  # leave no server or directory behind
            raise

    def _opts(self) -> str:
        return (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.tmp} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off")

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data (a database restart, an outage): ``pg_ctl stop``."""
        self._check("pg_ctl stop", self._exec([self.bindir / "pg_ctl", "-D", self.datadir, "-m",
                                               mode, "-w", "-t", "30", "stop"]))

    def restart(self) -> None:
        """Start a server stopped with ``halt`` again, on the same port, with the same data."""
        self._check("pg_ctl start", self._exec([self.bindir / "pg_ctl", "-D", self.datadir, "-l",
                                                self.logfile, "-o", self._opts(), "-w", "-t",
                                                "60", "start"]))
        self._wait_ready()

    def _start(self, attempts: int) -> "PostgresServer":
        self._prepare_user()
        base = Path(tempfile.gettempdir())
        if self._owner and not _world_traversable(base):
            base = Path("/tmp")
        self.tmp = Path(tempfile.mkdtemp(prefix="emews-pg-", dir=base))
        atexit.register(self.stop)
        if self._owner:
            os.chown(self.tmp, *self._owner)
        p = self._exec([self.bindir / "initdb", "-D", self.datadir, "-U", self.user,
                        "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        self._check("initdb", p)
        # Loopback only: TCP on 127.0.0.1 and the Unix socket in our own directory.
        (self.datadir / "pg_hba.conf").write_text(
            "# throwaway test server: trust, loopback only\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n")
        if self._owner:
            os.chown(self.datadir / "pg_hba.conf", *self._owner)
        last = None
        for _ in range(attempts):
            self.port = free_port()
            p = self._exec([self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile,
                            "-o", self._opts(), "-w", "-t", "60", "start"])
            if p.returncode == 0:
                self._started = True
                break
            last = p  # most likely someone took the port between free_port() and bind
        else:
            self._check("pg_ctl start", last)
        self._wait_ready()
        self.create_database(self.dbname)
        return self

    def _connect(self, dbname: str = "postgres"):
        try:
            import psycopg2
        except ImportError:
            raise PostgresUnavailable("the Python driver psycopg2 is missing from the environment. "
                                      "Run `make setup` (deps/requirements.txt has "
                                      "psycopg2-binary).") from None
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname=dbname,
                                connect_timeout=5)
        conn.autocommit = True
        return conn

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        err = None
        while time.time() < deadline:
            try:
                self._connect().close()
                return
            except PostgresUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - starting up
                err = e
                time.sleep(0.1)
        raise PostgresUnavailable(f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections "
                                  f"within {timeout} s: {err}")

    def create_database(self, name: str) -> str:
        """Create database ``name`` (an identifier) and return its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and '_' only")
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def stop(self) -> None:
        if self.tmp is None:
            return
        try:
            if self._started and self.datadir.exists():
                p = self._exec([self.bindir / "pg_ctl", "-D", self.datadir, "-m", "immediate",
                                "-w", "-t", "30", "stop"])
                if p.returncode != 0:
                    # Last resort: the postmaster's pid is the first line of postmaster.pid.
                    try:
                        pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
                        os.kill(pid, 9)
                    except (OSError, ValueError, IndexError):
                        pass
        finally:
            self._started = False
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    with PostgresServer() as pg:
        print(pg.url, flush=True)
        print(f"(data in {pg.tmp}; Ctrl-C stops the server and deletes it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
