"""The MPI task farm: ``mpiexec -n PROCS python -m emews_py.farm RUN_DIR/config.json``.

Rank 0 is the driver: it starts the optimizer process, answers its EQ messages, hands trials to
workers and is the single writer of the metadata store. Ranks 1..N-1 are resident workers: they
import the pilot (and Keras) once and evaluate trial after trial; in app mode each trial runs in
a subprocess instead. Nobody waits in a blocking MPI receive (MPICH busy-polls there): idle ranks
probe and sleep with a growing back-off.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path

TAG_TASKS, TAG_STOP, TAG_HELLO, TAG_EVENTS, TAG_RESULTS = 1, 2, 3, 4, 5

# Trials shorter than this are sent to workers in chunks; longer ones one at a time, so a slow
# worker never holds trials another could start.
CHUNK_BELOW_S = 0.005
MAX_CHUNK = 512


def log(msg: str) -> None:
    sys.stdout.write(f"[emews] {msg}\n")
    sys.stdout.flush()


def _now() -> float:
    return time.time()


def _backoff(delay: float) -> float:
    time.sleep(delay)
    return min(delay * 2 if delay else 2e-5, 0.002)


# --------------------------------------------------------------------------------------------
# Worker
# --------------------------------------------------------------------------------------------

class Worker:
    def __init__(self, comm, cfg: dict):
        self.comm, self.cfg = comm, cfg
        self.rank = comm.Get_rank()
        self.host = socket.gethostname()
        self.run_dir = Path(cfg["run_dir"])
        self.timeout = cfg.get("timeout")
        self._events: list[dict] = []
        self._last_send = 0.0

    def _sink(self, ev: dict) -> None:
        # Events go to rank 0 while a trial trains (at most every 0.2 s, and always with the
        # result), so a worker that dies mid-trial has already handed over what it reported.
        self._events.append(ev)
        if _now() - self._last_send > 0.2:
            self._flush_events()

    def _flush_events(self) -> None:
        if self._events:
            self.comm.send(self._events, dest=0, tag=TAG_EVENTS)
            self._events = []
        self._last_send = _now()

    def serve(self) -> None:
        from emews_py.pilot import load_pilot
        hello = {"host": self.host, "pid": os.getpid(), "mode": self.cfg["mode"]}
        pilot = None
        if self.cfg["mode"] == "resident":
            t0 = time.perf_counter()
            try:
                pilot = load_pilot(self.cfg["pilot"])
            except BaseException as e:  # noqa: BLE001
                hello["error"] = f"{e}\n{traceback.format_exc()}"
            hello["import_s"] = time.perf_counter() - t0
        self.comm.send(hello, dest=0, tag=TAG_HELLO)
        status = _mpi().Status()
        delay = 0.0
        while True:
            if not self.comm.Iprobe(source=0, tag=_mpi().ANY_TAG, status=status):
                delay = _backoff(delay)
                continue
            delay = 0.0
            tag = status.Get_tag()
            msg = self.comm.recv(source=0, tag=tag)
            if tag == TAG_STOP:
                return
            results = [self.run_resident(pilot, tid, params) if pilot is not None
                       else self.run_app(tid, params) for tid, params in msg]
            # The events travel ahead of the results (MPI keeps per-pair order).
            self._flush_events()
            self.comm.send(results, dest=0, tag=TAG_RESULTS)

    def _result(self, tid, status, started, objective=None, metrics=None, error=None, model=None):
        return {"id": tid, "status": status, "objective": objective, "metrics": metrics or None,
                "error": error, "started_at": started, "finished_at": _now(), "worker": self.rank,
                "host": self.host, "model_path": model}

    def run_resident(self, pilot, tid: int, params: dict) -> dict:
        from emews_py.pilot import TrialContext, TrialTimeout, normalize_result
        started = _now()
        deadline = started + self.timeout if self.timeout else None
        ctx = TrialContext(tid, self.run_dir, deadline, self._sink, worker=self.rank)
        try:
            res = normalize_result(pilot.run(params, ctx))
        except TrialTimeout:
            return self._result(tid, "timeout", started, error=f"trial passed its time limit of "
                                f"{self.timeout} s (TIMEOUT) and was stopped")
        except Exception as e:  # noqa: BLE001 - a failing trial must not end the farm
            return self._result(tid, "failed", started,
                                error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        if ctx.timed_out:
            return self._result(tid, "timeout", started, res["objective"], res["metrics"],
                                error=f"training stopped at the time limit of {self.timeout} s "
                                      f"(TIMEOUT)", model=res["model_path"])
        return self._result(tid, "completed", started, res["objective"], res["metrics"],
                            model=res["model_path"])

    def run_app(self, tid: int, params: dict) -> dict:
        """One trial in a subprocess: params go in as a JSON file, never through a shell."""
        d = self.run_dir / "trials" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        pfile, rfile, efile = d / "params.json", d / "result.json", d / "events.jsonl"
        pfile.write_text(json.dumps(params))
        cmd = [sys.executable, "-m", "emews_py.app", "--pilot", self.cfg["pilot"],
               "--params", str(pfile), "--result", str(rfile), "--events", str(efile),
               "--trial-id", str(tid), "--run-dir", str(self.run_dir)]
        if self.timeout:
            cmd += ["--timeout", str(self.timeout)]
        started = _now()
        with open(d / "output.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=self.timeout or None)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
        self._forward_app_events(efile)
        if timed_out:
            return self._result(tid, "timeout", started, error=f"killed after the time limit of "
                                f"{self.timeout} s (TIMEOUT); output in {d / 'output.log'}")
        try:
            res = json.loads(rfile.read_text())
        except (OSError, json.JSONDecodeError):
            tail = (d / "output.log").read_text(errors="replace")[-4000:]
            return self._result(tid, "failed", started, error=f"trial process exited with status "
                                f"{proc.returncode} and no result; output:\n{tail}")
        return self._result(tid, res["status"], started, res.get("objective"), res.get("metrics"),
                            res.get("error"), res.get("model_path"))

    def _forward_app_events(self, efile: Path) -> None:
        if not efile.exists():
            return
        for line in efile.read_text().splitlines():
            try:
                self._events.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut off by the kill
                pass


def _kill_group(proc: subprocess.Popen) -> None:
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


# --------------------------------------------------------------------------------------------
# Driver (rank 0)
# --------------------------------------------------------------------------------------------

class ExperimentFailed(Exception):
    pass


class Driver:
    def __init__(self, comm, cfg: dict):
        from emews_py import store
        self.comm, self.cfg = comm, cfg
        self.n_workers = comm.Get_size() - 1
        self.run_dir = Path(cfg["run_dir"])
        self.engine = store.init_db(cfg["db"])
        self.writer = store.Writer(self.engine)
        self.space = cfg.get("space_json")
        self.impute = cfg.get("impute", math.nan)
        self.keep_models = int(cfg.get("keep_models", 3))
        self.exp_id = self.writer.create_experiment(
            name=cfg["exp"], pilot=cfg["pilot"], algorithm=cfg["algo"], space=cfg.get("space_text"),
            space_json=self.space, settings=cfg["settings"], run_dir=str(self.run_dir),
            mode=cfg["mode"], workers=self.n_workers)
        self.trials: dict[int, dict] = {}
        self.queue: deque[int] = deque()
        self.inflight: dict[int, int] = {r: 0 for r in range(1, self.n_workers + 1)}
        self.assigned: dict[int, deque[list[int]]] = {r: deque() for r in self.inflight}
        self.busy_since: dict[int, float] = {}  # when each busy worker began its current trial
        self.stuck: set[int] = set()            # workers taken out of service by the watchdog
        timeout = cfg.get("timeout")
        # A resident trial is stopped cooperatively at TIMEOUT; one that still has not returned
        # after this grace period is stuck (in native code, say) and its worker is written off.
        self.stuck_after = timeout + max(10.0, 0.25 * timeout) if timeout else None
        self.request = None             # the optimizer request awaiting an answer
        self.waiting: set[int] = set()  # trials of a batch request not finished yet
        self.n_running = 0
        self.n_finished = 0
        self.stream_pending: set[int] = set()
        self.stream_done: deque[int] = deque()
        self.expect_final = False
        self.opt_done = False
        self.final_message = None
        self.avg_trial_s: float | None = None
        self.best_models: list[tuple[float, int, str]] = []
        self.hello: dict[int, dict] = {}
        self.opt_proc = None
        self.opt_log_pos = 0
        self.sends: list = []           # outstanding isend requests (kept alive until complete)
        self.opt_exited = False

    # ---- optimizer process ------------------------------------------------------------------
    def start_optimizer(self) -> None:
        from emews_py.eq import EQServer
        self.server = EQServer(self.cfg["endpoint"])
        self.opt_log = self.run_dir / "optimizer.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.opt_log, "wb") as out:
            self.opt_proc = subprocess.Popen(
                [sys.executable, "-m", "emews_py.optimizer", self.cfg["endpoint"], self.cfg["algo_file"]],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.run_dir, env=env)
        log(f"experiment {self.exp_id} '{self.cfg['exp']}': optimizer {self.cfg['algo_file']} "
            f"(pid {self.opt_proc.pid}), {self.n_workers} workers, mode {self.cfg['mode']}")

    def echo_optimizer_log(self) -> None:
        # The optimizer writes to optimizer.log; show it on the terminal as it comes.
        try:
            with open(self.opt_log, "rb") as f:
                f.seek(self.opt_log_pos)
                chunk = f.read()
        except OSError:
            return
        if not chunk:
            return
        cut = chunk.rfind(b"\n") + 1
        if cut == 0 and len(chunk) < 65536:
            return
        cut = cut or len(chunk)
        self.opt_log_pos += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            sys.stdout.write(f"[optimizer] {line}\n")
        sys.stdout.flush()

    def optimizer_tail(self, n: int = 6000) -> str:
        try:
            return self.opt_log.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ---- EQ messages --------------------------------------------------------------------------
    def handle_eq(self, kind: str, payload: str) -> None:
        if kind == "error":
            raise ExperimentFailed(f"the optimizer {self.cfg['algo_file']} stopped with an error:\n"
                                   f"{payload}")
        if kind == "bye":
            if not self.opt_done:
                log("warning: the optimizer exited without sending DONE; ending the experiment")
                self.opt_done = True
            return
        if self.expect_final:
            self.final_message, self.opt_done, self.expect_final = payload, True, False
            # Trials still queued are not wanted any more; running ones finish and are recorded.
            for tid in self.queue:
                t = self.trials[tid]
                t.update(status="cancelled", error="the optimizer finished before this trial started",
                         finished_at=_now())
                self.writer.trial_changed(t)
                self.stream_pending.discard(tid)
            self.queue.clear()
            return
        if self.request is not None:
            raise ExperimentFailed(f"the optimizer sent {payload[:200]!r} before reading the answer "
                                   f"to its previous message; call IN_get() after each OUT_put().")
        s = payload.strip()
        if s == "Params":
            settings = self.cfg["settings"]
            if self.cfg["algo_file"].endswith(".R"):
                from emews_py.rbridge import r_settings_text
                self.server.reply(r_settings_text(settings))
            else:
                self.server.reply(json.dumps(dict(settings, space=self.space)))
            return
        if s in ("DONE", "FINAL"):
            self.expect_final = True
            return
        if s.startswith("{") and '"eq"' in s[:200]:
            try:
                msg = json.loads(s)
            except json.JSONDecodeError as e:
                self._bad_message(payload, e)
            if isinstance(msg, dict) and "eq" in msg:
                return self.handle_ext(msg)
        points = []
        for part in s.split(";"):
            try:
                p = json.loads(part)
            except json.JSONDecodeError as e:
                self._bad_message(part, e)
            if not isinstance(p, dict):
                self._bad_message(part, "it is not a JSON object")
            points.append(p)
        ids = self.submit(points)
        self.waiting = set(ids)
        self.request = ("plain", ids)

    def _bad_message(self, text: str, why) -> None:
        raise ExperimentFailed(
            f"the optimizer {self.cfg['algo_file']} sent a message that is not valid: "
            f"{text[:300]!r} ({why}). OUT_put takes 'Params', 'DONE'/'FINAL', a batch of ';'-joined "
            f"JSON objects (one per point, e.g. '{{\"x1\": 0.5}};{{\"x1\": 2}}') or an extension "
            f"message (docs/eq-protocol.md). Fix the optimizer script.")

    def handle_ext(self, msg: dict) -> None:
        op = msg["eq"]
        if op in ("batch", "submit"):
            points = msg.get("points")
            if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
                self._bad_message(json.dumps(msg)[:300], "'points' must be a list of JSON objects")
            ids = self.submit(points)
            if op == "batch":
                self.waiting = set(ids)
                self.request = ("batch", ids)
            else:
                self.stream_pending.update(ids)
                self.server.reply(json.dumps({"eq": "submitted", "ids": ids}))
        elif op == "results":
            self.request = ("results", max(0, int(msg.get("min", 1))))
        elif op == "status":
            self.server.reply(json.dumps(dict(self.load(), eq="status")))
        else:
            self._bad_message(json.dumps(msg)[:300], f"unknown extension message eq = {op!r}")

    def load(self) -> dict:
        busy = len(self.queue) + self.n_running
        return {"pending": len(self.stream_pending),
                "free": max(0, self.n_workers - len(self.stuck) - busy),
                "workers": self.n_workers, "completed": self.n_finished}

    def submit(self, points: list[dict]) -> list[int]:
        from emews_py.space import check_point
        if self.space:
            for i, p in enumerate(points):
                why = check_point(self.space, p)
                if why:
                    raise ExperimentFailed(
                        f"the optimizer {self.cfg['algo_file']} proposed a point outside the search "
                        f"space {self.space.get('source')}: {why} (point {i + 1} of the batch: "
                        f"{json.dumps(p)[:300]}). Fix the optimizer or widen the space.")
        now = _now()
        ids = self.writer.add_trials(self.exp_id, points, now) if points else []
        for tid, p in zip(ids, points):
            self.trials[tid] = {"id": tid, "params": p, "status": "queued", "submitted_at": now}
        self.queue.extend(ids)
        return ids

    def maybe_answer(self) -> None:
        req = self.request
        if req is None:
            return
        kind, arg = req
        if kind in ("plain", "batch"):
            if self.waiting:
                return
            self.writer.flush()  # events and results are stored before the optimizer sees them
            if kind == "plain":
                self.server.reply(";".join(repr(self.value(self.trials[i])) for i in arg))
            else:
                self.server.reply(json.dumps({"eq": "results",
                                              "results": [self.result_msg(i) for i in arg]}))
        else:
            # min = 0 polls; with nothing pending the answer is immediate (and empty), never a hang
            need = min(arg, len(self.stream_done) + len(self.stream_pending))
            if len(self.stream_done) < need:
                return
            self.writer.flush()
            out = [self.result_msg(i) for i in self.stream_done]
            self.stream_done.clear()
            self.server.reply(json.dumps(dict(self.load(), eq="results", results=out)))
        self.request = None

    def value(self, t: dict) -> float:
        o = t.get("objective")
        return o if t["status"] == "completed" and o is not None else self.impute

    def result_msg(self, tid: int) -> dict:
        t = self.trials[tid]
        return {"id": tid, "params": t["params"], "status": t["status"],
                "objective": t.get("objective") if t["status"] == "completed" else None,
                "metrics": t.get("metrics")}

    # ---- workers -----------------------------------------------------------------------------
    def dispatch(self) -> None:
        if not self.queue:
            return
        fast = self.avg_trial_s is not None and self.avg_trial_s < CHUNK_BELOW_S
        for rank, n in self.inflight.items():
            if not self.queue:
                break
            if rank in self.stuck:
                continue
            # Keep one trial waiting at each worker when there is more work than workers, so a
            # worker never sits idle between trials; fast trials travel in chunks.
            limit = 2 if len(self.queue) > self.n_workers else 1
            if n >= limit:
                continue
            size = min(MAX_CHUNK, max(1, len(self.queue) // self.n_workers)) if fast else 1
            now = _now()
            batch = []
            for _ in range(min(size, len(self.queue))):
                t = self.trials[self.queue.popleft()]
                t.update(status="running", worker=rank, started_at=now,
                         host=self.hello.get(rank, {}).get("host"))
                # Same dict as the later result: a fast trial still costs one UPDATE per flush.
                self.writer.trial_changed(t)
                batch.append((t["id"], t["params"]))
            self.n_running += len(batch)
            # Never a blocking send here: a worker may be blocked sending us a large result
            # message at the same moment (MPI rendezvous), and both would wait forever.
            self.sends.append(self.comm.isend(batch, dest=rank, tag=TAG_TASKS))
            self.assigned[rank].append([tid for tid, _ in batch])
            if n == 0:
                self.busy_since[rank] = now
            self.inflight[rank] = n + 1

    def handle_mpi(self, msg, source: int, tag: int) -> None:
        if tag == TAG_EVENTS:
            self.writer.add_events(msg)
        elif tag == TAG_RESULTS:
            if source not in self.stuck:
                self.inflight[source] -= 1
                self.assigned[source].popleft()
                self.busy_since[source] = _now()
            for r in msg:
                self.finish(r)
        elif tag == TAG_HELLO:
            self.hello[source] = msg
            if msg.get("error"):
                raise ExperimentFailed(f"worker {source} on {msg['host']} could not load pilot "
                                       f"'{self.cfg['pilot']}': {msg['error']}")
            if "import_s" in msg:
                log(f"worker {source} (pid {msg['pid']} on {msg['host']}) imported pilot "
                    f"'{self.cfg['pilot']}' once in {msg['import_s']:.2f} s")

    def finish(self, r: dict) -> None:
        t = self.trials[r["id"]]
        if t["status"] not in ("queued", "running"):
            return  # a late answer from a worker written off as stuck; the first answer stands
        if t["status"] == "queued":  # re-queued from a stuck worker, which came back after all
            self.queue.remove(t["id"])
        else:
            self.n_running -= 1
        self.n_finished += 1
        self.waiting.discard(r["id"])
        obj = r.get("objective")
        if obj is not None and (math.isnan(obj) or math.isinf(obj)):
            obj = None
        t.update(status=r["status"], objective=obj, metrics=r.get("metrics"), worker=r["worker"],
                 host=r["host"], started_at=r["started_at"], finished_at=r["finished_at"],
                 error=r.get("error"))
        self.writer.trial_changed(t)
        dur = r["finished_at"] - r["started_at"]
        self.avg_trial_s = dur if self.avg_trial_s is None else 0.9 * self.avg_trial_s + 0.1 * dur
        if r["status"] != "completed":
            first = (r.get("error") or "").strip().splitlines()
            log(f"trial {r['id']} {r['status']} on worker {r['worker']}: "
                f"{first[0] if first else ''}")
        if r.get("model_path"):
            self.keep_model(r["id"], r["model_path"], obj if r["status"] == "completed" else None)
        if r["id"] in self.stream_pending:
            self.stream_pending.discard(r["id"])
            self.stream_done.append(r["id"])

    def keep_model(self, tid: int, path: str, metric: float | None) -> None:
        """Model store: the best K models (lowest objective) of the experiment stay on disk."""
        if metric is None or self.keep_models <= 0:
            Path(path).unlink(missing_ok=True)
            return
        self.best_models.append((metric, tid, path))
        self.best_models.sort()
        if len(self.best_models) > self.keep_models:
            _, _, worst = self.best_models.pop()
            if worst == path:
                Path(path).unlink(missing_ok=True)
                return
            self.writer.delete_model(worst)
            Path(worst).unlink(missing_ok=True)
        self.writer.add_model(tid, path, metric)

    # ---- main loop ---------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.queue) or any(self.inflight.values())

    def run(self) -> int:
        from mpi4py import MPI
        comm = self.comm
        self.start_optimizer()
        status = MPI.Status()
        delay, last_flush, last_check = 0.0, _now(), 0.0
        try:
            while True:
                progressed = False
                while True:
                    m = comm.improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
                    if m is None:
                        break
                    src, tag = status.Get_source(), status.Get_tag()
                    self.handle_mpi(m.recv(), src, tag)
                    progressed = True
                while (eqm := self.server.poll(0)) is not None:
                    self.handle_eq(*eqm)
                    progressed = True
                self.dispatch()
                if self.sends:
                    self.sends = [r for r in self.sends if not r.Test()]
                if self.request is not None:
                    self.maybe_answer()
                now = _now()
                if self.writer.dirty and now - last_flush > 0.5:
                    self.writer.flush()
                    last_flush = now
                if now - last_check > 0.05:
                    last_check = now
                    if self.stuck_after:
                        self.watchdog(now)
                    self.echo_optimizer_log()
                    if not self.opt_exited:
                        self.check_optimizer()
                if self.opt_done and not self.busy() and self.request is None:
                    # Submitted trials the optimizer no longer waits for are cancelled, not lost.
                    break
                delay = 0.0 if progressed else _backoff(delay)
        except ExperimentFailed as e:
            return self.fail(str(e))
        except KeyboardInterrupt:
            return self.fail("interrupted (Ctrl-C); trials still running were cancelled")
        except Exception:  # noqa: BLE001 - the driver's own bug still ends the run clearly
            return self.fail(f"internal error in the driver:\n{traceback.format_exc()}")
        return self.finish_ok()

    def watchdog(self, now: float) -> None:
        """Take a worker whose trial is far past TIMEOUT out of service, so the run goes on."""
        for rank, n in self.inflight.items():
            if n == 0 or rank in self.stuck or now - self.busy_since[rank] < self.stuck_after:
                continue
            batches = self.assigned[rank]
            ids = [i for b in batches for i in b if self.trials[i]["status"] == "running"]
            self.stuck.add(rank)
            self.inflight[rank] = 0
            batches.clear()
            host = self.hello.get(rank, {}).get("host")
            why = (f"no result {now - self.busy_since[rank]:.0f} s after it started: the pilot did "
                   f"not stop at the time limit of {self.cfg['timeout']} s (TIMEOUT); worker "
                   f"{rank} is taken out of service")
            log(f"worker {rank}: trial {ids[0]} is stuck past its time limit; the worker gets no "
                f"more trials ({self.n_workers - len(self.stuck)} left)")
            self.finish({"id": ids[0], "status": "timeout", "error": why, "worker": rank,
                         "host": host, "started_at": self.busy_since[rank], "finished_at": now})
            for tid in reversed(ids[1:]):  # trials waiting behind it go back to the queue
                self.trials[tid].update(status="queued", worker=None, host=None)
                self.writer.trial_changed(self.trials[tid])
                self.n_running -= 1
                self.queue.appendleft(tid)
            if len(self.stuck) == self.n_workers:
                raise ExperimentFailed("every worker is stuck in a trial past its time limit "
                                       "(TIMEOUT); the pilot does not honour the limit")

    def check_optimizer(self) -> None:
        """Notice the optimizer's exit; raises ExperimentFailed unless it ended with DONE."""
        rc = self.opt_proc.poll()
        if rc is None:
            return
        # It exited: read what it sent last (an error with its traceback, DONE and final).
        time.sleep(0.05)
        while (eqm := self.server.poll(100)) is not None:
            self.handle_eq(*eqm)
        self.echo_optimizer_log()
        if rc != 0 or not self.opt_done:
            how = (f"was killed by signal {signal.Signals(-rc).name}" if rc < 0
                   else f"exited with status {rc}")
            raise ExperimentFailed(
                f"the optimizer process ({self.cfg['algo_file']}) {how} before finishing the "
                f"experiment. Last output (full log in {self.opt_log}):\n{self.optimizer_tail()}")
        self.opt_exited = True  # cleanly; trials still running finish and are recorded

    def stop_workers(self) -> None:
        for r in range(1, self.n_workers + 1):
            if r not in self.stuck:
                self.comm.send(None, dest=r, tag=TAG_STOP)
        if self.stuck:
            # A worker stuck in native code never reads STOP; everything is recorded, so end the
            # job (MPI_Abort with code 0 makes mpiexec exit 0).
            log(f"ending the MPI job: worker(s) {sorted(self.stuck)} are still stuck in a trial")
            sys.stdout.flush()
            self.comm.Abort(0)

    def cancel_open(self, why: str) -> int:
        n = 0
        for t in self.trials.values():
            if t["status"] in ("queued", "running"):
                t.update(status="cancelled", error=why, finished_at=_now())
                self.writer.trial_changed(t)
                n += 1
        self.queue.clear()
        return n

    def finish_ok(self) -> int:
        from emews_py import store
        n = self.cancel_open("the optimizer finished before this trial was needed")
        if n:
            log(f"{n} submitted trial(s) were not needed by the optimizer and are marked cancelled")
        self.writer.flush()
        self.writer.update_experiment(self.exp_id, status="completed", finished_at=store.utcnow(),
                                      final_message=self.final_message)
        self._close_optimizer()
        self.print_summary()
        self.stop_workers()
        return 0

    def fail(self, why: str) -> int:
        from emews_py import store
        sys.stdout.flush()
        sys.stderr.write(f"\n[emews] ERROR: experiment {self.exp_id} failed: {why}\n\n")
        sys.stderr.flush()
        try:
            self.server.abort(why[:2000])
        except Exception:  # noqa: BLE001
            pass
        self._close_optimizer()
        try:
            self.cancel_open("cancelled: the experiment failed")
            self.writer.flush()
            self.writer.update_experiment(self.exp_id, status="failed", finished_at=store.utcnow(),
                                          error=why, final_message=self.final_message)
            self.print_summary()
        except Exception:  # noqa: BLE001
            sys.stderr.write(f"[emews] could not record the failure in the store:\n"
                             f"{traceback.format_exc()}\n")
        if any(self.inflight.values()) or self.stuck:
            # A resident worker mid-trial cannot be interrupted; end the whole job.
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(1)
        self.stop_workers()
        return 1

    def _close_optimizer(self) -> None:
        p = self.opt_proc
        if p is not None and p.poll() is None:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p is not None:
            self.echo_optimizer_log()
        if hasattr(self, "server"):
            self.server.close()

    def print_summary(self) -> None:
        from emews_py import store
        s = store.summary(self.engine, self.exp_id)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())) or "none"
        log(f"run directory: {self.run_dir}")
        log(f"database: {self.engine.url.render_as_string(hide_password=True)} "
            f"(experiment id {self.exp_id})")
        log(f"experiment status: {s['experiment']['status']}")
        log(f"trials by status: {counts}")
        if s["best"]:
            b = s["best"]
            log(f"best trial: id {b['id']} objective {b['objective']:.6g} params {json.dumps(b['params'])}")
        else:
            log("best trial: none completed")
        if self.final_message:
            log(f"optimizer's final message: {self.final_message[:500]}")


def _mpi():
    from mpi4py import MPI
    return MPI


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI
    cfg = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        sys.stderr.write("[emews] the farm needs at least 2 MPI ranks (a driver and a worker); "
                         "set PROCS to 2 or more.\n")
        return 2
    if comm.Get_rank() == 0:
        return Driver(comm, cfg).run()
    Worker(comm, cfg).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
