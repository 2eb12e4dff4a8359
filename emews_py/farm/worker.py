"""A worker rank: import the pilot once (resident mode) or start one ``python -m emews_py.app``
per trial (app mode), run the trials of each message in order, send back ``Result`` wire tuples.

The mode is the configured one: a resident worker whose pilot import fails says so in its hello
(the driver fails the experiment naming worker, host and the error) and never runs trials.

While a message's trials run, a small thread tells the driver which trial is running and hands
over the results finished so far, whenever the driver's view is older than ``NOTICE_S``: so the
driver's watchdog always knows the trial actually running and when it started, also inside a
chunk of many trials, at no cost for chunks that finish quickly.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from emews_py.config import RunConfig
from emews_py.farm.transport import DRIVER, Backoff, Tag, mpi, recv_from
from emews_py.trials import Result, TrialStatus

NOTICE_S = 0.5      # the driver learns of a trial running this long (or a chunk's progress)
EVENTS_EVERY_S = 0.2


class Outbox:
    """Everything a worker sends, under one lock so events always travel ahead of the results
    they belong to, whichever thread sends."""

    def __init__(self, comm):
        self.comm = comm
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.results: list[tuple] = []   # finished in the current message, not sent yet
        self.running: tuple[int, float] | None = None
        self.noticed: int | None = None  # the running trial the driver knows of
        self.last_report = 0.0           # when the driver last heard which trial runs
        self.last_events = 0.0
        self._stop = threading.Event()

    def _send_events(self) -> None:
        if self.events:
            self.comm.send(self.events, dest=DRIVER, tag=Tag.EVENTS)
            self.events = []

    def event(self, ev: dict) -> None:
        with self.lock:
            self.events.append(ev)
            # While a trial trains, events go at most every 0.2 s: a worker that dies mid-trial
            # has already handed over what it reported.
            if time.time() - self.last_events > EVENTS_EVERY_S:
                self._send_events()
                self.last_events = time.time()

    def begin_message(self, first_id: int, at: float) -> None:
        with self.lock:
            self.running, self.noticed, self.last_report = (first_id, at), first_id, at

    def started(self, tid: int, at: float) -> None:
        with self.lock:
            self.running = (tid, at)

    def finished(self, r: Result) -> None:
        with self.lock:
            self.results.append(r.to_wire())

    def end_message(self) -> None:
        with self.lock:
            self._send_events()
            self.comm.send(self.results, dest=DRIVER, tag=Tag.RESULTS)
            self.results, self.running, self.noticed = [], None, None
            self.last_report = time.time()

    def _notice(self) -> None:
        with self.lock:
            run = self.running
            if run is None or run[0] == self.noticed or time.time() - self.last_report < NOTICE_S:
                return
            self._send_events()
            self.comm.send((self.results, run[0], run[1]), dest=DRIVER, tag=Tag.PROGRESS)
            self.results, self.noticed, self.last_report = [], run[0], time.time()

    def watch(self) -> threading.Thread:
        def loop():
            while not self._stop.wait(NOTICE_S / 4):
                self._notice()
        t = threading.Thread(target=loop, name="progress", daemon=True)
        t.start()
        return t

    def close(self, t: threading.Thread | None) -> None:
        self._stop.set()
        if t is not None:
            t.join()


class Worker:
    def __init__(self, comm, cfg: RunConfig):
        self.comm, self.cfg = comm, cfg
        self.rank = comm.Get_rank()
        self.host = socket.gethostname()
        self.run_dir = cfg.run_path
        self.timeout = cfg.timeout
        self.out = Outbox(comm)
        self.pilot = None
        self.import_error: str | None = None

    def hello(self) -> dict:
        from emews_py.pilot import load_pilot
        h = {"host": self.host, "pid": os.getpid(), "mode": self.cfg.mode}
        if self.cfg.mode == "resident":
            t0 = time.perf_counter()
            try:
                self.pilot = load_pilot(self.cfg.pilot)
            except BaseException as e:  # noqa: BLE001 - reported to the driver, which fails the run
                self.import_error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                h["error"] = self.import_error
            h["import_s"] = time.perf_counter() - t0
        return h

    def serve(self) -> None:
        self.comm.send(self.hello(), dest=DRIVER, tag=Tag.HELLO)
        status, backoff = mpi().Status(), Backoff()
        # The notice thread sends while the main thread probes: that needs MPI_THREAD_MULTIPLE
        # (mpi4py asks for it; MPICH gives it). Without it the driver learns of progress per
        # message only, and its watchdog blames the first unreported trial of a chunk.
        watcher = self.out.watch() if mpi().Query_thread() >= mpi().THREAD_MULTIPLE else None
        try:
            while True:
                msg, tag = recv_from(self.comm, DRIVER, status, backoff)
                if tag == Tag.STOP:
                    return
                self.out.begin_message(msg[0][0], time.time())
                for tid, params in msg:
                    self.out.finished(self.run_one(tid, params))
                self.out.end_message()
        finally:
            self.out.close(watcher)

    def run_one(self, tid: int, params: dict) -> Result:
        started = time.time()
        self.out.started(tid, started)
        if self.cfg.mode == "app":
            return self.run_app(tid, params, started)
        if self.pilot is None:  # the driver fails the run on our hello; never run another mode
            return self._result(tid, TrialStatus.FAILED, started,
                                error=f"the pilot could not be imported:\n{self.import_error}")
        return self.run_resident(tid, params, started)

    def _result(self, tid, status, started, objective=None, metrics=None, error=None, model=None):
        return Result(tid, status, started, time.time(), self.rank, self.host, objective,
                      metrics or None, error, model)

    def run_resident(self, tid: int, params: dict, started: float) -> Result:
        from emews_py.pilot import TrialContext, run_trial
        deadline = started + self.timeout if self.timeout else None
        ctx = TrialContext(tid, self.run_dir, deadline, self.out.event, worker=self.rank)
        status, res, error = run_trial(self.pilot, params, ctx, self.timeout)
        return self._result(tid, status, started, res["objective"], res["metrics"], error,
                            res["model_path"])

    def run_app(self, tid: int, params: dict, started: float) -> Result:
        """One trial in a subprocess: params go in as a JSON file, never through a shell."""
        d = self.run_dir / "trials" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        pfile, rfile, efile = d / "params.json", d / "result.json", d / "events.jsonl"
        pfile.write_text(json.dumps(params))
        cmd = [sys.executable, "-m", "emews_py.app", "--pilot", self.cfg.pilot,
               "--params", str(pfile), "--result", str(rfile), "--events", str(efile),
               "--trial-id", str(tid), "--run-dir", str(self.run_dir)]
        if self.timeout:
            cmd += ["--timeout", str(self.timeout)]
        with open(d / "output.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=self.timeout or None)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(proc)
        self._forward_app_events(efile)
        if timed_out:
            return self._result(tid, TrialStatus.TIMEOUT, started,
                                error=f"killed after the time limit of {self.timeout} s "
                                      f"(TIMEOUT); output in {d / 'output.log'}")
        try:
            res = json.loads(rfile.read_text())
            st = TrialStatus(res["status"])
        except (OSError, ValueError, KeyError):
            tail = (d / "output.log").read_text(errors="replace")[-4000:]
            return self._result(tid, TrialStatus.FAILED, started,
                                error=f"trial process exited with status {proc.returncode} and "
                                      f"no result; output:\n{tail}")
        return self._result(tid, st, started, res.get("objective"), res.get("metrics"),
                            res.get("error"), res.get("model_path"))

    def _forward_app_events(self, efile: Path) -> None:
        if not efile.exists():
            return
        for line in efile.read_text().splitlines():
            try:
                self.out.event(json.loads(line))
            except json.JSONDecodeError:  # a line cut off by the kill
                pass


def kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue
