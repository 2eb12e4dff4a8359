"""A worker rank: runs the trials the driver sends, in order, and answers with ``Result`` wire
tuples; a fault in a trial costs only that trial, never the rank (MPI cannot survive a rank's
death: the MPICH wheel aborts the whole job).

Resident mode: the pilot runs in ONE supervised child process, ``python -m
emews_py.farm.child`` (``child.py``), which imports the pilot (and Keras) once and runs trial
after trial. If it dies (a segfault, the OOM killer, ``kill -9``) the trial it was running is
recorded ``failed`` with the signal; if a trial is still running at TIMEOUT plus grace
(``trial_stuck_after``: the pilot's cooperative time limit did not stop it, native code say) the
worker kills the child and records ``timeout``. Either way a fresh child imports the pilot and
runs the rest. App mode: one ``python -m emews_py.app`` process per trial, in a session of its
own (a Ctrl-C to the terminal does not reach it) that dies with its worker (PR_SET_PDEATHSIG).

The rank never blocks: its loop polls MPI and its child (``Backoff``: idle ranks do not spin a
core), so STOP is read at any time, also while a trial runs. Events go to the driver as they
come, always ahead of the results they belong to; while a chunk's trials run, the driver hears
which trial is running and gets the results finished so far whenever its view is older than
``NOTICE_S`` (a PROGRESS notice), so its watchdog, now only a backstop for a rank that stops
answering, always knows the trial actually running.
"""
from __future__ import annotations

import json
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection

from emews_py.config import RunConfig
from emews_py.farm.child import SLOT_BYTES, read_slot, write_halt
from emews_py.farm.procs import die_with_parent_of
from emews_py.farm.scheduler import trial_stuck_after
from emews_py.farm.transport import DRIVER, WOKEN_IDLE_S, Backoff, Tag, Waker, mpi, node_id
from emews_py.trials import Result, TrialStatus

NOTICE_S = 0.5        # the driver learns of a trial running this long (or a chunk's progress)
CHECK_S = 0.05        # how often a child's or trial process's life is checked
BUSY_WAIT_S = 0.02    # while a trial runs, MPI is polled this often (the child's messages wake
                      # the worker at once): a busy rank costs no CPU, STOP is read within 20 ms
MAX_DEATHS = 3        # a child dying this often in a row without running a trial is given up
APP_EVENTS_S = 0.2    # with a STOPPER, an app-mode trial's new events are forwarded this often
GPUS_ENV = "EMEWS_GPUS_PER_NODE"   # GPUS_PER_NODE, set by `emews workflow` / `emews launch`


def log(msg: str) -> None:
    sys.stdout.write(f"[emews] {msg}\n")
    sys.stdout.flush()


def death_text(pid: int, rc: int | None) -> str:
    """How a process ended, for users: 'was killed by signal SIGKILL (...)' or 'exited ...'."""
    if rc is None:
        return f"(pid {pid}) stopped answering"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = {"SIGKILL": " (the out-of-memory killer or a kill -9)",
                "SIGSEGV": " (a crash in native code)", "SIGABRT": " (an abort in native code)",
                "SIGBUS": " (a crash in native code)"}.get(name, "")
        return f"(pid {pid}) was killed by signal {name}{hint}"
    return f"(pid {pid}) exited with status {rc}"


def assign_gpu(comm) -> str | None:
    """GPUS_PER_NODE: this worker rank's GPU, by its rank among the workers on its node (the
    driver, rank 0, takes none). Every worker rank calls it (collective over the workers only,
    MPI_Comm_create_group, so the driver need not take part); it sets CUDA_VISIBLE_DEVICES in this
    process before any child starts, so the resident interpreter and app-mode trials see it before
    TensorFlow is imported. The node's devices are the first GPUS_PER_NODE of a
    CUDA_VISIBLE_DEVICES the batch system set (so a job given GPUs 2,3 uses those), else
    0..GPUS_PER_NODE-1. More workers than GPUs on a node share them round-robin, with TensorFlow's
    memory growth on (TF_FORCE_GPU_ALLOW_GROWTH, unless set): small models train side by side,
    where TensorFlow would otherwise take a whole GPU's memory for the first."""
    try:
        n = int(os.environ.get(GPUS_ENV) or 0)
    except ValueError:
        n = 0   # the CLI checked it; a hand-made environment gets no GPUs
    if n <= 0:
        return os.environ.get("CUDA_VISIBLE_DEVICES") or None
    MPI = mpi()
    group = comm.Get_group().Excl([DRIVER])
    workers = comm.Create_group(group)
    node = workers.Split_type(MPI.COMM_TYPE_SHARED, key=workers.Get_rank())
    local, size = node.Get_rank(), node.Get_size()
    node.Free()
    workers.Free()
    group.Free()
    seen = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    devices = seen[:n] if seen else [str(i) for i in range(n)]
    gpu = devices[local % len(devices)]
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if size > len(devices):
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        if local == 0:
            log(f"GPUS_PER_NODE={n}: {size} workers on {socket.gethostname()} share "
                f"{len(devices)} GPU{'s' if len(devices) > 1 else ''} ({', '.join(devices)}), "
                f"up to {-(-size // len(devices))} per GPU, TensorFlow memory growth "
                f"{os.environ['TF_FORCE_GPU_ALLOW_GROWTH']}")
    return gpu


class Chunk:
    """One TASKS message of the driver: its trials not yet answered, results not yet sent."""
    __slots__ = ("first", "left", "results")

    def __init__(self, ids: list[int]):
        self.first = ids[0]
        self.left = set(ids)
        self.results: list[tuple] = []


class Child:
    """The resident interpreter, seen from the worker: its process, connection and slot."""

    def __init__(self, cfg: RunConfig, rank: int, host: str, slot_fd: int):
        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emews_py.farm.child", str(theirs.fileno()), str(slot_fd)],
            pass_fds=(theirs.fileno(), slot_fd), preexec_fn=die_with_parent_of(ignore_stop=True))
        theirs.close()
        self.conn = Connection(mine.detach())
        try:
            self.conn.send(("init", cfg, rank, host))
        except OSError:  # it died at once: the worker sees EOF and its exit status next
            pass
        # Connection.poll builds a selector per call: too dear 500 times a second on an idle rank
        self.poller = select.poll()
        self.poller.register(self.conn.fileno(), select.POLLIN)
        self.pid = self.proc.pid
        self.ready = False
        self.started_at = time.time()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once when the child sends something (poll counts
        whole milliseconds: shorter waits just sleep)."""
        if seconds < 0.001:
            time.sleep(seconds)
        else:
            self.poller.poll(seconds * 1000.0)

    def readable(self) -> bool:
        return bool(self.poller.poll(0))

    def kill(self) -> int | None:
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        return self.reap()

    def reap(self, wait: float = 5.0) -> int | None:
        try:
            rc = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            rc = None
        self.conn.close()
        return rc

    def stop(self, idle: bool) -> None:
        """Leave: an idle child exits by itself (1 s at most), a busy one is killed."""
        if idle:
            try:
                self.conn.send(("stop",))
                self.proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.kill()
        else:
            self.conn.close()


class AppTrial:
    """One app-mode trial process: params go in as a JSON file, never through a shell."""

    def __init__(self, w: "Worker", tid: int, params: dict):
        self.tid, self.started = tid, time.time()
        self.events_at, self.events_read = 0, 0.0   # forwarded up to this byte, last read when
        d = self.dir = w.run_dir / "trials" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        pfile, self.rfile, self.efile = d / "params.json", d / "result.json", d / "events.jsonl"
        pfile.write_text(json.dumps(params))
        cmd = [sys.executable, "-m", "emews_py.app", "--pilot", w.cfg.pilot,
               "--params", str(pfile), "--result", str(self.rfile), "--events", str(self.efile),
               "--trial-id", str(tid), "--run-dir", str(w.run_dir)]
        if w.timeout:
            cmd += ["--timeout", str(w.timeout)]
        with open(d / "output.log", "wb") as out:
            # Its own session (a terminal's Ctrl-C is for the driver to handle), and it dies with
            # this rank, so a killed worker leaves no orphan holding a GPU.
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent_of(new_session=True))


class Worker:
    def __init__(self, comm, cfg: RunConfig):
        self.comm, self.cfg = comm, cfg
        self.rank = comm.Get_rank()
        self.host = socket.gethostname()
        self.gpu = assign_gpu(comm)             # first: before any child process starts
        self.run_dir = cfg.run_path
        self.timeout = cfg.timeout
        self.stuck_s = trial_stuck_after(cfg.timeout)
        self.resident = cfg.mode != "app"
        self.chunks: deque[Chunk] = deque()     # answered in this order
        self.todo: deque[tuple[int, dict]] = deque()  # received, not given to a child/process yet
        self.given: dict[int, dict] = {}        # given to the child, no result yet (in order)
        self.child: Child | None = None
        self.app: AppTrial | None = None
        self.import_error: str | None = None
        self.hello_sent = False
        self.deaths = 0                         # child deaths in a row that ran no trial
        self.last_death = ""
        self.noticed: int | None = None         # the running trial the driver knows of
        self.last_report = 0.0                  # when the driver last heard which trial runs
        self.slot_fd = os.memfd_create("emews-trial-slot") if self.resident else -1
        if self.resident:
            os.ftruncate(self.slot_fd, SLOT_BYTES)
            self.slot = mmap.mmap(self.slot_fd, SLOT_BYTES)

    # ---- the loop ----------------------------------------------------------------------------
    def serve(self) -> None:
        # The driver orchestrates a clean stop (it sends STOP); a signal to the whole process
        # group must not kill ranks under it, or MPI ends the job before anything is recorded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:  # before HELLO: the driver's first WAKE follows it
            waker = Waker()
        except ValueError:  # not the main thread (set_wakeup_fd): no signals, naps of <= 30 ms
            waker = None
        if self.resident:
            self.start_child()
        else:
            self.send_hello({})
        status, backoff, any_tag = mpi().Status(), Backoff(), mpi().ANY_TAG
        last_check = 0.0
        try:
            while True:
                progressed = False
                while self.comm.Iprobe(source=DRIVER, tag=any_tag, status=status):
                    tag = status.Get_tag()
                    msg = self.comm.recv(source=DRIVER, tag=tag)
                    if tag == Tag.STOP:
                        return
                    if tag == Tag.HALT:
                        self.halt(msg)
                        continue
                    self.take(msg)
                    progressed = True
                if self.child is not None:
                    progressed |= self.read_child()
                now = time.time()
                if now - last_check > CHECK_S:
                    last_check = now
                    self.check(now)
                self.feed()
                self.notice(now)
                if progressed:
                    backoff.reset()
                elif self.child is not None and self.given:
                    self.child.wait(BUSY_WAIT_S)
                elif self.app is not None:
                    time.sleep(BUSY_WAIT_S)
                elif waker is not None:  # idle: the child's messages and the driver's WAKE end it
                    waker.watch(self.child.conn.fileno() if self.child is not None else None)
                    if waker.woken:  # the driver signals this rank: it may sleep longer
                        backoff.idle_limit = max(backoff.idle_limit, WOKEN_IDLE_S)
                    backoff.wait(waker.wait)
                    if waker.rang:  # the message may lag its signal: poll fast again for a while
                        waker.rang = False
                        backoff.reset()
                elif self.child is not None:
                    backoff.wait(self.child.wait)
                else:
                    backoff.sleep()
        except Exception:  # noqa: BLE001 - a worker's own bug must not leave the job hanging
            sys.stderr.write(f"[emews] worker {self.rank}: internal error:\n"
                             f"{traceback.format_exc()}\n")
            sys.stderr.flush()
            self.shutdown()
            self.comm.Abort(1)
        finally:
            self.shutdown()

    def take(self, batch: list) -> None:
        """A TASKS message: its trials join the queue; a first chunk starts the driver's clock."""
        if not self.chunks:
            self.noticed, self.last_report = batch[0][0], time.time()
        self.chunks.append(Chunk([tid for tid, _ in batch]))
        self.todo.extend(batch)

    def halt(self, tid: int) -> None:
        """The driver's early stopper wants trial ``tid`` ended: tell its training, which stops
        at its next epoch end and returns normally (stored ``stopped``). A trial that is no longer
        running here has ended anyway."""
        if self.resident:
            if tid in self.given:
                write_halt(self.slot, tid)
        elif self.app is not None and self.app.tid == tid:
            try:  # the app process turns SIGUSR2 into ctx.stop_requested() (emews_py/app.py)
                os.kill(self.app.proc.pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass

    def feed(self) -> None:
        """Give waiting trials to the child (all at once: it runs them in order) or start the
        next app-mode process."""
        if not self.todo:
            return
        if self.resident:
            if self.child is None and self.import_error is None and self.hello_sent:
                self.start_child()
            if self.import_error is not None:  # the driver fails the run on our hello
                while self.todo:
                    tid, _ = self.todo.popleft()
                    self.record(self.verdict(tid, TrialStatus.FAILED, time.time(),
                                             f"the pilot could not be imported:\n"
                                             f"{self.import_error}"))
            elif self.child is not None and self.child.ready:
                batch = list(self.todo)
                self.todo.clear()
                self.given.update(batch)
                try:
                    self.child.conn.send(("chunk", batch))
                except OSError:  # it died: check() gives these to a fresh child
                    pass
        elif self.app is None:
            self.app = AppTrial(self, *self.todo.popleft())

    # ---- answers -----------------------------------------------------------------------------
    def record(self, wire: tuple) -> None:
        """A trial's result: into its chunk; every finished chunk at the head goes to the driver."""
        tid = wire[0]
        self.given.pop(tid, None)
        for c in self.chunks:
            if tid in c.left:
                c.left.discard(tid)
                c.results.append(wire)
                break
        while self.chunks and not self.chunks[0].left:
            self.comm.send(self.chunks.popleft().results, dest=DRIVER, tag=Tag.RESULTS)
            # The driver now takes the next chunk's first trial as running since now.
            self.noticed = self.chunks[0].first if self.chunks else None
            self.last_report = time.time()

    def running(self) -> tuple[int, float] | None:
        """The trial running now and since when, if any."""
        if self.resident:
            if self.child is None or not self.given:
                return None
            tid, since = read_slot(self.slot)
            return (tid, since) if tid in self.given else None
        return (self.app.tid, self.app.started) if self.app is not None else None

    def notice(self, now: float) -> None:
        """Tell the driver which trial of the head chunk runs, with the results so far, when its
        view is older than NOTICE_S."""
        if not self.chunks or now - self.last_report < NOTICE_S:
            return
        run = self.running()
        if run is None or run[0] == self.noticed or run[0] not in self.chunks[0].left:
            return
        head = self.chunks[0]
        self.comm.send((head.results, run[0], run[1]), dest=DRIVER, tag=Tag.PROGRESS)
        head.results, self.noticed, self.last_report = [], run[0], now

    def verdict(self, tid: int, status: TrialStatus, started: float, error: str) -> tuple:
        return Result(tid, status, started, time.time(), self.rank, self.host,
                      error=error, gpu=self.gpu).to_wire()

    def send_hello(self, extra: dict) -> None:
        self.comm.send({"host": self.host, "pid": os.getpid(), "node": node_id(),
                        "mode": self.cfg.mode, **extra},
                       dest=DRIVER, tag=Tag.HELLO)
        self.hello_sent = True

    # ---- the resident child ------------------------------------------------------------------
    def start_child(self) -> None:
        self.slot[:SLOT_BYTES] = bytes(SLOT_BYTES)
        self.child = Child(self.cfg, self.rank, self.host, self.slot_fd)

    def read_child(self) -> bool:
        c = self.child
        got = False
        try:
            while c.readable():
                kind, *rest = c.conn.recv()
                got = True
                if kind == "results":
                    for wire in rest[0]:
                        self.record(wire)
                    self.deaths = 0
                elif kind == "events":
                    self.comm.send(rest[0], dest=DRIVER, tag=Tag.EVENTS)
                elif kind == "ready":
                    self.on_ready(rest[0])
                elif kind == "error":
                    self.on_import_error(rest[0])
                    return True
        except (EOFError, OSError):
            self.on_child_death(c.reap())
            return True
        return got

    def on_ready(self, import_s: float) -> None:
        self.child.ready = True
        if not self.hello_sent:
            self.send_hello({"import_s": import_s, "child_pid": self.child.pid})
        else:
            log(f"worker {self.rank}: a fresh interpreter (pid {self.child.pid}) imported pilot "
                f"'{self.cfg.pilot}' in {import_s:.2f} s (the last one {self.last_death})")

    def on_import_error(self, text: str) -> None:
        """The pilot's import raised: before the first hello the driver fails the run on it;
        after (a fresh child), the trials waiting for it fail with the traceback."""
        self.child.kill()
        self.child = None
        if not self.hello_sent:
            self.import_error = text
            self.send_hello({"error": text})
            return
        self.fail_waiting(f"a fresh interpreter for pilot '{self.cfg.pilot}' could not import it:"
                          f"\n{text}")

    def fail_waiting(self, why: str) -> None:
        now = time.time()
        for tid in [*self.given, *(t for t, _ in self.todo)]:
            self.record(self.verdict(tid, TrialStatus.FAILED, now, why))
        self.todo.clear()
        self.given.clear()

    def on_child_death(self, rc: int | None, blame: tuple[int, float] | None = None,
                       timed_out: bool = False) -> None:
        """The child is gone (died, or killed for a stuck trial): its running trial gets its
        verdict; trials it had not answered (results of fast trials not sent yet, trials not
        started) go to a fresh child."""
        c = self.child
        self.child = None
        if blame is None:
            tid, since = read_slot(self.slot)
            blame = (tid, since) if tid in self.given else None
        how = death_text(c.pid, rc)
        self.last_death = how
        if timed_out:
            self.last_death = f"(pid {c.pid}) was killed: trial {blame[0]} was stuck past TIMEOUT"
            tid, since = blame
            self.record(self.verdict(
                tid, TrialStatus.TIMEOUT, since,
                f"still running {time.time() - since:.0f} s after it started, past the time limit "
                f"of {self.timeout:g} s (TIMEOUT) plus {self.stuck_s - self.timeout:.0f} s grace: "
                f"the pilot did not stop at the limit (stuck in native code?); its interpreter "
                f"(pid {c.pid}) was killed and a fresh one runs this worker's other trials"))
            self.deaths = 0
        elif blame is not None:
            tid, since = blame
            self.record(self.verdict(
                tid, TrialStatus.FAILED, since,
                f"the trial's interpreter {how} while running this trial; a fresh interpreter "
                f"runs this worker's other trials"))
            self.deaths = 0
        else:
            self.deaths += 1
        waiting = list(self.given.items())
        self.given.clear()
        self.todo.extendleft(reversed(waiting))
        if self.deaths >= MAX_DEATHS:
            where = "while importing the pilot" if not c.ready else "between trials"
            why = (f"worker {self.rank} on {self.host}: the pilot's interpreter died {self.deaths} "
                   f"times in a row without running a trial, {where} (the last one {how}); "
                   f"this worker's waiting trials are failed")
            self.deaths = 0
            if not self.hello_sent:
                self.import_error = why
                self.send_hello({"error": why})
                return
            self.fail_waiting(why)
            return
        self.start_child()

    def check(self, now: float) -> None:
        """A child or app-mode process that died, or a trial stuck past TIMEOUT plus grace."""
        if self.child is not None:
            run = self.running()
            if run is not None and self.stuck_s is not None and now - run[1] > self.stuck_s:
                self.read_child()  # its result may be on the way after all
                run = self.running()
                if self.child is not None and run is not None and now - run[1] > self.stuck_s:
                    self.on_child_death(self.child.kill(), blame=run, timed_out=True)
                    return
            if self.child is not None and self.child.proc.poll() is not None:
                self.read_child()  # what it sent before dying, then EOF: on_child_death
                if self.child is not None and self.child.proc.poll() is not None:
                    self.on_child_death(self.child.reap())
        elif self.app is not None:
            self.check_app(now)

    # ---- app mode ----------------------------------------------------------------------------
    def check_app(self, now: float) -> None:
        a = self.app
        timed_out = False
        if a.proc.poll() is None:
            if not self.timeout or now - a.started <= self.timeout:
                # A stopper judges the training while it runs: its epochs go out as they come.
                if self.cfg.stopper and now - a.events_read >= APP_EVENTS_S:
                    a.events_read = now
                    self._forward_app_events(a, final=False)
                return
            timed_out = True
            kill_group(a.proc)
        self.app = None
        self._forward_app_events(a, final=True)
        self.record(self.app_result(a, timed_out))

    def app_result(self, a: AppTrial, timed_out: bool) -> tuple:
        log_file = a.dir / "output.log"
        if timed_out:
            return self.verdict(a.tid, TrialStatus.TIMEOUT, a.started,
                                f"killed after the time limit of {self.timeout} s (TIMEOUT); "
                                f"output in {log_file}")
        try:
            res = json.loads(a.rfile.read_text())
            st = TrialStatus(res["status"])
        except (OSError, ValueError, KeyError):
            tail = log_file.read_text(errors="replace")[-4000:]
            rc = a.proc.returncode
            how = death_text(a.proc.pid, rc) if rc and rc < 0 else f"exited with status {rc}"
            return self.verdict(a.tid, TrialStatus.FAILED, a.started,
                                f"trial process {how} and no result; output:\n{tail}")
        return Result(a.tid, st, a.started, time.time(), self.rank, self.host, res.get("objective"),
                      res.get("metrics") or None, res.get("error"), res.get("model_path"),
                      gpu=self.gpu, stopped_epoch=res.get("stopped_epoch")).to_wire()

    def _forward_app_events(self, a: AppTrial, final: bool) -> None:
        """The events the trial process appended since the last call (whole lines only while it
        runs; at the end every line, one cut off by a kill skipped)."""
        try:
            with open(a.efile, "rb") as f:
                f.seek(a.events_at)
                data = f.read()
        except OSError:
            return
        if not final:
            data = data[:data.rfind(b"\n") + 1]
        a.events_at += len(data)
        events = []
        for line in data.decode(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut off by the kill
                pass
        if events:
            self.comm.send(events, dest=DRIVER, tag=Tag.EVENTS)

    # ---- the end -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """STOP (or an error in this loop): no trial process outlives the worker."""
        if self.app is not None:
            kill_group(self.app.proc, grace=0.5)
            self.app = None
        if self.child is not None:
            self.child.stop(idle=not self.given)
            self.child = None


def kill_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
