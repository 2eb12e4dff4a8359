"""Rank 0: wires the parts together and nothing else.

    MPI message  -> scheduler (who runs what) + Trial records -> store writer -> protocol
    EQ message   -> protocol -> actions (insert trials, reply, finish, fail)
    every turn   -> dispatch (scheduler -> isend), flush (at the latest every 0.5 s and always
                    before a reply), watchdog, optimizer supervision

Any failure ends in ``fail``: the experiment is marked ``failed`` with the reason, its open trials
``cancelled`` (one rule, ``store.end_experiment``), the optimizer told to stop, the job ended.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

from emews_py import eq, store
from emews_py.config import RunConfig
from emews_py.farm.models import ModelKeeper
from emews_py.farm.protocol import Fail, Finish, InsertTrials, Protocol, Reply
from emews_py.farm.scheduler import Scheduler, stuck_after
from emews_py.farm.supervisor import Supervisor
from emews_py.farm.transport import Backoff, Sends, Tag, mpi, poll_any
from emews_py.trials import ExperimentStatus, Result, Trial, TrialStatus

FLUSH_EVERY_S = 0.5
CHECK_EVERY_S = 0.05


def log(msg: str) -> None:
    sys.stdout.write(f"[emews] {msg}\n")
    sys.stdout.flush()


class ExperimentFailed(Exception):
    pass


class Driver:
    def __init__(self, comm, cfg: RunConfig):
        self.comm, self.cfg = comm, cfg
        self.n_workers = comm.Get_size() - 1
        self.engine = store.init_db(cfg.db)
        self.writer = store.Writer(self.engine)
        self.exp_id = self.writer.create_experiment(
            name=cfg.exp, pilot=cfg.pilot, algorithm=cfg.algo, space=cfg.space_text,
            space_json=cfg.space_json, settings=cfg.settings, run_dir=cfg.run_dir, mode=cfg.mode,
            workers=self.n_workers, config=json.loads(cfg.to_json()))
        self.trials: dict[int, Trial] = {}
        self.sched = Scheduler(list(range(1, self.n_workers + 1)), stuck_after(cfg.timeout))
        self.proto = Protocol(cfg.algo_file, cfg.settings, cfg.space_json, cfg.impute,
                              history=lambda i: store.queries.history(self.engine, i))
        self.optimizer = Supervisor(cfg.endpoint, cfg.algo_file, cfg.run_dir)
        self.models = ModelKeeper(self.writer, cfg.keep_models)
        self.sends = Sends(comm)
        self.hello: dict[int, dict] = {}
        self.server: eq.EQServer | None = None
        self.opt_exited = False

    # ---- start -------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        try:
            self.server = eq.EQServer(cfg.endpoint)
        except Exception as e:  # noqa: BLE001 - zmq.ZMQError and friends
            raise ExperimentFailed(f"the EQ endpoint {cfg.endpoint} for the optimizer cannot be "
                                   f"bound ({e}). It is a socket in the temporary directory: check "
                                   f"that TMPDIR exists and is writable.") from None
        try:
            pid = self.optimizer.start()
        except OSError as e:
            raise ExperimentFailed(f"the optimizer process for {cfg.algo_file} could not be "
                                   f"started ({e}); check that {sys.executable} runs.") from None
        log(f"experiment {self.exp_id} '{cfg.exp}': optimizer {cfg.algo_file} (pid {pid}), "
            f"{self.n_workers} workers, mode {cfg.mode}")

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.start()
            self.loop()
        except ExperimentFailed as e:
            return self.fail(str(e))
        except eq.EQPeerGone as e:
            # Never block on a peer that may be gone; if its process died, say how.
            rc = self.optimizer.exit_code()
            return self.fail(self.optimizer.death_report(rc) if rc
                             else f"the optimizer is gone: {e}")
        except KeyboardInterrupt:
            return self.fail("interrupted (Ctrl-C); trials still running were cancelled")
        except Exception:  # noqa: BLE001 - the driver's own bug still ends the run clearly
            return self.fail(f"internal error in the driver:\n{traceback.format_exc()}")
        return self.finish_ok()

    def loop(self) -> None:
        status, backoff = mpi().Status(), Backoff()
        last_flush = last_check = 0.0
        while True:
            progressed = False
            while (m := poll_any(self.comm, status)) is not None:
                self.on_mpi(*m)
                progressed = True
            while (e := self.server.poll(0)) is not None:
                self.do(self.proto.on_message(*e, self.load()))
                progressed = True
            now = time.time()
            self.dispatch(now)
            self.sends.test()
            if self.proto.request is not None:
                self.do(self.proto.answer(self.load()))
            if self.writer.dirty and now - last_flush > FLUSH_EVERY_S:
                self.writer.flush()
                last_flush = now
            if now - last_check > CHECK_EVERY_S:
                last_check = now
                self.watchdog(now)
                self.optimizer.echo_log()
                if not self.opt_exited:
                    self.check_optimizer()
            if self.proto.finished and not self.sched.busy and self.proto.request is None:
                return
            if progressed:
                backoff.reset()
            else:
                backoff.sleep()

    def load(self) -> dict:
        return {"free": self.sched.free(), "workers": self.n_workers}

    # ---- protocol actions --------------------------------------------------------------------
    def do(self, actions) -> None:
        for a in actions:
            if isinstance(a, Reply):
                self.writer.flush()  # results and their events are stored before the optimizer sees them
                self.server.reply(a.text)
            elif isinstance(a, InsertTrials):
                now = time.time()
                ids = self.writer.add_trials(self.exp_id, a.points, now) if a.points else []
                new = [Trial(i, p, now) for i, p in zip(ids, a.points)]
                self.trials.update((t.id, t) for t in new)
                self.sched.submit(ids)
                self.do(self.proto.on_inserted(new, self.load()))
            elif isinstance(a, Finish):
                if a.warning:
                    log(f"warning: {a.warning}")
                self.cancel(self.sched.drop_queued(),
                            "the optimizer finished before this trial started")
            elif isinstance(a, Fail):
                raise ExperimentFailed(a.why)

    def cancel(self, ids: list[int], why: str) -> None:
        now = time.time()
        for tid in ids:
            t = self.trials[tid]
            t.cancel(why, now)
            self.writer.trial_changed(t)
        self.proto.forget(ids)

    # ---- workers -----------------------------------------------------------------------------
    def dispatch(self, now: float) -> None:
        for rank, ids in self.sched.assign(now):
            host = self.hello.get(rank, {}).get("host")
            batch = []
            for tid in ids:
                t = self.trials[tid]
                t.start(rank, host, now)
                self.writer.trial_changed(t)
                batch.append((tid, t.params))
            self.sends.isend(batch, rank, Tag.TASKS)

    def on_mpi(self, msg, source: int, tag: int) -> None:
        if tag == Tag.EVENTS:
            self.writer.add_events(msg)
        elif tag == Tag.RESULTS:
            results = [Result.from_wire(w) for w in msg]
            self.sched.on_chunk_done(source, [r.trial_id for r in results], time.time())
            for r in results:
                self.record(r, source)
        elif tag == Tag.PROGRESS:
            wires, running, since = msg
            results = [Result.from_wire(w) for w in wires]
            self.sched.on_progress(source, [r.trial_id for r in results], running, since)
            for r in results:
                self.record(r, source)
        elif tag == Tag.HELLO:
            self.hello[source] = msg
            if msg.get("error"):
                raise ExperimentFailed(f"worker {source} on {msg['host']} could not import pilot "
                                       f"'{self.cfg.pilot}' (MODE={self.cfg.mode}): {msg['error']}")
            if "import_s" in msg:
                log(f"worker {source} (pid {msg['pid']} on {msg['host']}) imported pilot "
                    f"'{self.cfg.pilot}' once in {msg['import_s']:.2f} s")

    def record(self, r: Result, source: int) -> None:
        t = self.trials[r.trial_id]
        if t.status is TrialStatus.QUEUED:
            # Re-queued from a worker written off as stuck, which answered after all.
            if not self.sched.unqueue(t.id):
                return
        elif t.status is not TrialStatus.RUNNING or t.worker != source:
            return  # a late answer from a written-off worker; the first answer stands
        t.finish(r)
        self.writer.trial_changed(t)
        self.sched.observe(r.duration)
        if r.status is not TrialStatus.COMPLETED:
            first = (r.error or "").strip().splitlines()
            log(f"trial {r.trial_id} {r.status} on worker {r.worker}: {first[0] if first else ''}")
        if r.model_path:
            self.models.offer(t.id, r.model_path,
                              t.objective if r.status is TrialStatus.COMPLETED else None)
        self.proto.on_finished(t)

    def watchdog(self, now: float) -> None:
        """A worker whose trial is far past TIMEOUT is taken out of service, so the run goes on."""
        for v in self.sched.watchdog(now):
            t = self.trials[v.trial_id]
            host = self.hello.get(v.rank, {}).get("host")
            why = (f"no result {now - v.since:.0f} s after it started: the pilot did not stop at "
                   f"the time limit of {self.cfg.timeout} s (TIMEOUT); worker {v.rank} is taken "
                   f"out of service")
            log(f"worker {v.rank}: trial {t.id} is stuck past its time limit; the worker gets no "
                f"more trials ({self.n_workers - len(self.sched.out)} left)")
            t.finish(Result(t.id, TrialStatus.TIMEOUT, v.since, now, v.rank, host, error=why))
            self.writer.trial_changed(t)
            self.proto.on_finished(t)
            for tid in v.requeued:  # never started there: back to the queue
                self.trials[tid].requeue()
                self.writer.trial_changed(self.trials[tid])
        if self.sched.all_out:
            raise ExperimentFailed("every worker is stuck in a trial past its time limit "
                                   "(TIMEOUT); the pilot does not honour the limit")

    # ---- the optimizer process ---------------------------------------------------------------
    def check_optimizer(self) -> None:
        """Notice the optimizer's exit; raises ExperimentFailed unless it ended with DONE."""
        rc = self.optimizer.exit_code()
        if rc is None:
            return
        # It exited: read what it sent last (an error with its traceback, DONE and final).
        time.sleep(0.05)
        while (e := self.server.poll(100)) is not None:
            self.do(self.proto.on_message(*e, self.load()))
        self.optimizer.echo_log()
        if rc != 0 or not self.proto.finished:
            raise ExperimentFailed(self.optimizer.death_report(rc))
        self.opt_exited = True  # cleanly; trials still running finish and are recorded

    def close_optimizer(self) -> None:
        self.optimizer.stop()
        if self.server is not None:
            self.server.close()

    # ---- the end -----------------------------------------------------------------------------
    def end(self, status: ExperimentStatus, why_cancelled: str, error: str | None = None) -> int:
        self.writer.flush()
        return store.end_experiment(self.engine, self.exp_id, status, error=error,
                                    final_message=self.proto.final_message,
                                    why_cancelled=why_cancelled)

    def stop_workers(self) -> None:
        for r in self.sched.ranks:
            if r not in self.sched.out:
                self.comm.send(None, dest=r, tag=Tag.STOP)
        if self.sched.out:
            # A worker stuck in native code never reads STOP; everything is recorded, so end the
            # job (MPI_Abort with code 0 makes mpiexec exit 0).
            log(f"ending the MPI job: worker(s) {sorted(self.sched.out)} are still stuck in a trial")
            sys.stdout.flush()
            self.comm.Abort(0)

    def finish_ok(self) -> int:
        n = self.end(ExperimentStatus.COMPLETED, "the optimizer finished before this trial was needed")
        if n:
            log(f"{n} submitted trial(s) were not needed by the optimizer and are marked cancelled")
        self.close_optimizer()
        self.print_summary()
        self.stop_workers()
        return 0

    def fail(self, why: str) -> int:
        sys.stdout.flush()
        sys.stderr.write(f"\n[emews] ERROR: experiment {self.exp_id} failed: {why}\n\n")
        sys.stderr.flush()
        if self.server is not None:
            self.server.abort(why[:2000])
        try:
            self.close_optimizer()
        except Exception:  # noqa: BLE001 - recording the failure matters more
            pass
        try:
            self.end(ExperimentStatus.FAILED, "cancelled: the experiment failed", error=why)
            self.print_summary()
        except Exception:  # noqa: BLE001
            sys.stderr.write(f"[emews] could not record the failure in the store:\n"
                             f"{traceback.format_exc()}\n")
        if self.sched.n_inflight or self.sched.out:
            # A resident worker mid-trial cannot be interrupted; end the whole job.
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(1)
        self.stop_workers()
        return 1

    def print_summary(self) -> None:
        s = store.summary(self.engine, self.exp_id)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())) or "none"
        log(f"run directory: {self.cfg.run_dir}")
        log(f"database: {self.engine.url.render_as_string(hide_password=True)} "
            f"(experiment id {self.exp_id})")
        log(f"experiment status: {s['experiment']['status']}")
        log(f"trials by status: {counts}")
        if s["best"]:
            b = s["best"]
            log(f"best trial: id {b['id']} objective {b['objective']:.6g} "
                f"params {json.dumps(b['params'])}")
        else:
            log("best trial: none completed")
        if self.proto.final_message:
            log(f"optimizer's final message: {self.proto.final_message[:500]}")
