"""Rank 0: wires the parts together and nothing else.

    MPI message  -> scheduler (who runs what) + Trial records -> store writer -> protocol
    EQ message   -> protocol -> actions (insert trials, reply, finish, fail)
    every turn   -> dispatch (scheduler -> isend), flush (at the latest every 0.5 s and always
                    before a reply), watchdog, optimizer supervision

Any failure ends in ``fail``: the experiment is marked ``failed`` with the reason, its open trials
``cancelled`` (one rule, ``store.end_experiment``), the optimizer told to stop, the job ended.
SIGTERM/SIGINT (a batch system's time limit, ``scancel``, Ctrl-C) end in ``interrupt``: running
and queued trials and the experiment become ``interrupted``, everything is flushed, the workers
stop, and one line says how to resume (``replay.py``).

Campaign bookkeeping: every job of an experiment is a row of ``segments`` with a heartbeat every
``HEARTBEAT_S``; every EQ message and answer goes to the transcript (``eq_messages``) before it
takes effect. While the store is away (a database restart, a lock held elsewhere) results stay in
memory and the optimizer's next message waits; past ``store_wait`` the run stops as interrupted
and leaves what it could not store in ``RUN_DIR/unsaved.jsonl`` for the resume.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback

from emews_py import eq, store
from emews_py.config import RunConfig
from emews_py.farm import replay, stoppers
from emews_py.farm.models import ModelKeeper
from emews_py.farm.progress import Progress
from emews_py.farm.protocol import Fail, Finish, InsertTrials, Protocol, Reply
from emews_py.farm.scheduler import Scheduler, stuck_after
from emews_py.farm.supervisor import Supervisor
from emews_py.farm.transport import (Backoff, Sends, Tag, idle_wait_s, mpi, poll_any,
                                     STOP_FILE, node_id, signalable, wake_signals)
from emews_py.trials import ExperimentStatus, Result, Trial, TrialStatus

FLUSH_EVERY_S = 0.5
CHECK_EVERY_S = 0.05
HEARTBEAT_S = 5.0
WAIT_NOTICE_S = 60.0     # while every worker waits for the optimizer, one line per minute


def log(msg: str) -> None:
    sys.stdout.write(f"[emews] {msg}\n")
    sys.stdout.flush()


class ExperimentFailed(Exception):
    pass


class StartError(Exception):
    """The experiment cannot start (e.g. a resume that is not possible); exit status 2."""


class Interrupted(Exception):
    """A signal (SIGTERM, SIGINT) or a store that stayed away: stop cleanly, resumable."""


class _Send:
    """An answer already recorded in the transcript, waiting for the store to take it."""

    def __init__(self, text: str):
        self.text = text


class Driver:
    def __init__(self, comm, cfg: RunConfig):
        self.comm, self.cfg = comm, cfg
        self.n_workers = comm.Get_size() - 1
        self.engine = store.init_db(cfg.db, writer=True)
        self.writer = store.Writer(self.engine)
        self.trials: dict[int, Trial] = {}
        self.transcript: replay.Transcript | None = None
        self.delivered: set[int] = set()      # trials the optimizer saw in the replayed answers
        self.proto_ids: set[int] = set()      # trials inserted through the protocol (this job)
        if cfg.resume:
            self.exp_id = cfg.resume
            self.open_resume()
        else:
            self.exp_id = self.writer.create_experiment(
                name=cfg.exp, pilot=cfg.pilot, algorithm=cfg.algo, space=cfg.space_text,
                space_json=cfg.space_json, settings=cfg.settings, run_dir=cfg.run_dir,
                mode=cfg.mode, workers=self.n_workers, config=json.loads(cfg.to_json()))
        self.seq = self.transcript.next_seq if self.transcript else 0
        self.segment_number = self.next_segment_number()
        self.segment_id = self.writer.start_segment(
            self.exp_id, self.segment_number, cfg.run_dir, socket.gethostname(), os.getpid(),
            comm.Get_size(), self.n_workers)
        self.sched = Scheduler(list(range(1, self.n_workers + 1)), stuck_after(cfg.timeout))
        self.proto = Protocol(cfg.algo_file, cfg.settings, cfg.space_json, cfg.impute,
                              history=lambda i: store.queries.history(self.engine, i))
        self.optimizer = Supervisor(cfg.endpoint, cfg.algo_file, cfg.run_dir)
        self.models = ModelKeeper(self.writer, cfg.keep_models)
        self.sends = Sends(comm)
        self.hello: dict[int, dict] = {}
        self.progress = Progress(cfg.settings.get("max.budget"))
        self.progress.seed(self.trials.values())   # a resume: what earlier jobs finished
        self.server: eq.EQServer | None = None
        self.opt_exited = False
        self.stop_signal: int | None = None
        self.stop_file_at = 0.0               # when RUN_DIR/stop-request was last looked for
        self.held: list = []                  # actions waiting for the store to come back
        self.last_opt_msg = time.time()       # the optimizer's last message (OPT_TIMEOUT)
        self.idle_since: float | None = None  # since when every worker waits for the optimizer
        self.last_wait_notice = 0.0
        self.last_heartbeat = 0.0
        # STOPPER: epoch_end events feed the rule; a trial it condemns gets a HALT to its worker
        self.stopper = stoppers.make(cfg.stopper) if cfg.stopper else None
        self.stopper_seeded = 0               # a resume: peer curves of the earlier jobs
        if self.stopper is not None and cfg.resume:
            seen = replay.epoch_history(self.engine, self.exp_id, cfg.stopper["metric"])
            for tid, epoch, value in seen:
                self.stopper.observe(tid, epoch, value)   # their verdicts are moot: finished
            self.stopper_seeded = len({tid for tid, _, _ in seen})

    # ---- resume ------------------------------------------------------------------------------
    def open_resume(self) -> None:
        """Load what the earlier jobs left: trials, transcript, unsaved results."""
        from sqlalchemy import select, update
        with self.engine.connect() as c:
            row = c.execute(select(store.experiments.c.status)
                            .where(store.experiments.c.id == self.exp_id)).first()
        if row is None:
            raise StartError(f"there is no experiment {self.exp_id} in {self.cfg.db} to resume")
        with self.engine.connect() as c:
            dirs = c.execute(select(store.segments.c.run_dir)
                             .where(store.segments.c.experiment_id == self.exp_id)).scalars().all()
        for d in dirs:   # what a job could not store before it stopped (the store was away)
            f = os.path.join(d or "", "unsaved.jsonl")
            if d and os.path.isfile(f):
                n = store.import_spill(self.engine, f)
                log(f"imported {n} change(s) that an earlier job could not store, from {f}")
        trials = replay.load_trials(self.engine, self.exp_id)
        messages = replay.load_transcript(self.engine, self.exp_id)
        if trials and not messages:
            raise StartError(f"experiment {self.exp_id} has trials but no EQ transcript (it was "
                             f"recorded before schema 0003), so its optimizer cannot be replayed. "
                             f"Start a new experiment instead (mlrMBO can reuse its results: "
                             f"SETTINGS=\"warm.start = {self.exp_id}\").")
        self.trials = {t.id: t for t in trials}
        self.transcript = replay.Transcript(messages, list(self.trials))
        with self.engine.begin() as c:   # a job that died without a word: its segment was killed
            c.execute(update(store.segments)
                      .where(store.segments.c.experiment_id == self.exp_id,
                             store.segments.c.status == "running")
                      .values(status="killed", ended_at=store.utcnow()))
        self.writer.update_experiment(self.exp_id, status=ExperimentStatus.RUNNING,
                                      finished_at=None, error=None)
        done = sum(t.status is TrialStatus.COMPLETED for t in trials)
        log(f"resuming experiment {self.exp_id}: {done} completed trial(s) are not run again; "
            f"replaying {sum(m.direction == 'in' for m in messages)} recorded optimizer message(s)")

    def next_segment_number(self) -> int:
        from sqlalchemy import func, select
        with self.engine.connect() as c:
            n = c.execute(select(func.max(store.segments.c.number))
                          .where(store.segments.c.experiment_id == self.exp_id)).scalar()
        return (n or 0) + 1

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
        if self.stopper is not None:
            log(f"early stopping: {stoppers.describe(cfg.stopper)} on {cfg.stopper['metric']}"
                + (f"; peers: the learning curves of {self.stopper_seeded} finished trial(s) of "
                   f"the earlier jobs" if cfg.resume else ""))

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        from emews_py.farm import STOP_SIGNALS
        # The CLI passes a stop signal that may have reached it alone on to this process.
        # With its node: a CLI on another host (HOSTS) asks through RUN_DIR/stop-request instead.
        (self.cfg.run_path / "driver.pid").write_text(f"{os.getpid()} {node_id()}\n")
        if STOP_SIGNALS:                  # it came while the driver was starting
            self.stop_signal = STOP_SIGNALS[0]
        for sig in (signal.SIGTERM, signal.SIGINT):   # no KeyboardInterrupt mid-write: a flag
            signal.signal(sig, self.on_signal)
        try:
            self.start()
            if self.transcript is not None and not self.transcript.active:
                self.go_live()
            self.loop()
        except Interrupted as e:
            return self.interrupt(str(e))
        except ExperimentFailed as e:
            return self.fail(str(e))
        except eq.EQPeerGone as e:
            # Never block on a peer that may be gone; if its process died, say how.
            rc = self.optimizer.exit_code()
            return self.fail(self.optimizer.death_report(rc) if rc
                             else f"the optimizer is gone: {e}")
        except Exception:  # noqa: BLE001 - the driver's own bug still ends the run clearly
            return self.fail(f"internal error in the driver:\n{traceback.format_exc()}")
        return self.finish_ok()

    def check_stop_file(self, now: float) -> None:
        """RUN_DIR/stop-request (the signal's number): the CLI's stop when this driver runs on
        another host, where its pid means nothing to the CLI. Looked for once a second: on a
        shared file system a lookup is not free."""
        if self.stop_signal is not None or now - self.stop_file_at < 1.0:
            return
        self.stop_file_at = now
        try:
            self.stop_signal = int((self.cfg.run_path / STOP_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass

    def on_signal(self, signum, _frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def loop(self) -> None:
        # Idle, the driver sleeps up to 10 ms (a worker's results wait no longer), but in a ZeroMQ
        # poll: the optimizer's next message wakes it at once.
        status, backoff = mpi().Status(), Backoff(idle_limit=min(0.01, idle_wait_s()))

        def wait_eq(seconds: float) -> None:
            if seconds < 0.001:
                time.sleep(seconds)
            else:
                self.server.sock.poll(int(seconds * 1000))
        last_flush = last_check = 0.0
        while True:
            progressed = False
            while (m := poll_any(self.comm, status)) is not None:
                self.sends.heard(m[1])
                self.on_mpi(*m)
                progressed = True
            if self.held:
                self.retry_held()
            # While the store is away, the optimizer's next message waits in the socket.
            while not self.held and (e := self.server.poll(0)) is not None:
                self.on_eq(*e)
                progressed = True
            now = time.time()
            self.dispatch(now)
            self.sends.test()
            if self.proto.request is not None and not self.held:
                self.do(self.proto.answer(self.load()))
            if self.writer.dirty and now - last_flush > FLUSH_EVERY_S:
                self.flush()
                last_flush = now
            if now - last_check > CHECK_EVERY_S:
                last_check = now
                self.check_stop_file(now)
                if self.stop_signal is not None:
                    raise Interrupted(f"interrupted by {signal.Signals(self.stop_signal).name}")
                self.watchdog(now)
                self.watch_optimizer(now)
                self.watch_store(now)
                self.optimizer.echo_log()
                if not self.opt_exited:
                    self.check_optimizer()
                self.progress.tick(now, len(self.sched.running))
            if self.proto.finished and not self.sched.busy and self.proto.request is None \
                    and not self.held:
                return
            if progressed:
                backoff.reset()
            elif self.held:  # the optimizer's message waits in the socket: a poll would not sleep
                backoff.sleep()
            else:
                backoff.wait(wait_eq)

    def load(self) -> dict:
        return {"free": self.sched.free(), "workers": self.n_workers}

    # ---- the store ---------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Write what is buffered; False while the store is away (everything stays buffered).
        The writer's notices (it went away, it is back) are printed here, wherever it wrote."""
        ok = self.writer.flush(force=force)
        for line in self.writer.take_notices():
            log(line + ("" if ok else f"; the run stops if it stays away "
                                      f"{self.cfg.store_wait:.0f} s (it then resumes from here)"))
        return ok

    def watch_store(self, now: float) -> None:
        if now - self.last_heartbeat > HEARTBEAT_S:
            self.last_heartbeat = now
            self.writer.heartbeat(self.exp_id, self.segment_id)
            self.flush()   # prints what the heartbeat's write noticed
        away = self.writer.away_for(now)
        if away > self.cfg.store_wait:
            raise Interrupted(f"the store {self.db_name()} was unreachable for {away:.0f} s "
                              f"(limit {self.cfg.store_wait:.0f} s)")

    def retry_held(self) -> None:
        held, self.held = self.held, []
        self.do(held)

    def db_name(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ---- the optimizer's messages ------------------------------------------------------------
    def on_eq(self, kind: str, payload: str) -> None:
        self.last_opt_msg = time.time()
        if kind == eq.PUT:
            if self.transcript is not None and self.transcript.active:
                return self.replay_message(payload)
            self.writer.record_eq(self.exp_id, self.seq, "in", payload)
            self.seq += 1
        self.do(self.proto.on_message(kind, payload, self.load()))

    def replay_message(self, payload: str) -> None:
        """Answer a restarted optimizer from the transcript: feed the protocol the trials the
        recorded answer delivered, in order, so it rebuilds that answer (nothing runs again)."""
        rec = self.transcript.next_in()
        if payload != rec.payload:
            raise ExperimentFailed(replay.divergence(self.transcript.n_replayed, payload,
                                                     rec.payload, self.exp_id))
        out = self.transcript.next_out()
        load = (out or {}).get("load") or self.load()
        ids = (out or {}).get("ids") or []
        for i in ids:            # results of trials an earlier message inserted (stream mode)
            if i in self.proto_ids:
                self.feed(i)
        replies: list[Reply] = []
        self.do(self.proto.on_message(eq.PUT, payload, load), replies)
        for i in ids:
            if i not in self.delivered:
                self.feed(i)
        n = self.transcript.n_replayed
        if out is not None:
            replies += self.proto.answer(load)
            if len(replies) != 1:
                raise ExperimentFailed(f"the transcript of experiment {self.exp_id} does not match "
                                       f"its trials at message {n} ({len(replies)} answers "
                                       f"rebuilt instead of one); it cannot be resumed")
            self.flush()
            self.server.reply(replies[0].text)
        elif self.transcript.active and replies:   # only DONE and the final message go unanswered
            raise ExperimentFailed(f"the transcript of experiment {self.exp_id} has no answer to "
                                   f"its message {n}; it cannot be resumed")
        if not self.transcript.active:
            # The last recorded message: from here on the run is live (and records again); an
            # answer that was never sent goes out now.
            self.go_live()
            self.do(replies if out is None else [])

    def feed(self, tid: int) -> None:
        """A trial of the transcript's answer, back to the protocol as it finished then."""
        t = self.trials.get(tid)
        if t is None or t.status not in replay.FINISHED:
            raise ExperimentFailed(
                f"the transcript of experiment {self.exp_id} says the optimizer was given trial "
                f"{tid}, but the store has it as {t.status.value if t else 'missing'}: the store "
                f"was changed since. This experiment cannot be resumed.")
        self.delivered.add(tid)
        self.proto.on_finished(t)

    def go_live(self) -> None:
        """The transcript is used up: hand the protocol what finished and the optimizer has not
        seen, and run again what had not finished (unless the optimizer had already finished)."""
        self.transcript = None
        rerun = []
        for t in sorted(self.trials.values(), key=lambda t: (t.finished_at or 0, t.id)):
            if t.id in self.delivered:
                continue
            if t.status in replay.FINISHED:
                self.proto.on_finished(t)
            elif self.proto.finished:
                t.cancel("the optimizer finished before this trial was needed", time.time())
                self.writer.trial_changed(t)
            else:
                t.requeue()
                self.writer.trial_changed(t)
                rerun.append(t.id)
        rerun.sort()
        self.sched.submit(rerun)
        log(f"experiment {self.exp_id}: transcript replayed; {len(rerun)} trial(s) that had not "
            f"finished run again; live from here")

    # ---- protocol actions --------------------------------------------------------------------
    def do(self, actions, replies: list | None = None) -> None:
        """Carry out the protocol's actions. ``replies``: collect answers instead of sending them
        (a replayed message); anything the store could not take yet is held and retried."""
        for k, a in enumerate(actions):
            if self.held:
                self.held.append(a)
            elif isinstance(a, Reply):
                if replies is not None:
                    replies.append(a)
                    continue
                self.writer.record_eq(self.exp_id, self.seq, "out",
                                      json.dumps({"ids": list(a.ids), "load": a.load}))
                self.seq += 1
                # Results and their events are stored before the optimizer sees them.
                if not self.flush():
                    self.held.append(_Send(a.text))
                    continue
                self.server.reply(a.text)
            elif isinstance(a, _Send):
                if not self.flush():
                    self.held.append(a)
                    continue
                self.server.reply(a.text)
            elif isinstance(a, InsertTrials):
                self.insert(a, replies)
            elif isinstance(a, Finish):
                if a.warning:
                    log(f"warning: {a.warning}")
                self.cancel(self.sched.drop_queued(),
                            "the optimizer finished before this trial started")
            elif isinstance(a, Fail):
                raise ExperimentFailed(a.why)

    def insert(self, a: InsertTrials, replies: list | None) -> None:
        now = time.time()
        if replies is not None:   # replayed: these trials exist; the message owns the next ids
            ids = self.transcript.take_ids(len(a.points))
            missing = a.points[len(ids):]
            if missing:
                # Stored, but its job stopped before its trials were (the store was away): only
                # the last recorded message can be in that state; its trials are inserted now.
                if self.transcript.active:
                    raise ExperimentFailed(f"the transcript of experiment {self.exp_id} has fewer "
                                           f"trials than its message {self.transcript.n_replayed} "
                                           f"proposed; this experiment cannot be resumed")
                added = self.writer.add_trials(self.exp_id, missing, now)
                self.trials.update((i, Trial(i, p, now)) for i, p in zip(added, missing))
                ids += added
            new = [self.trials[i] for i in ids]
            self.proto_ids.update(ids)
            self.do(self.proto.on_inserted(new, self.load()), replies)
            return
        try:
            ids = self.writer.add_trials(self.exp_id, a.points, now) if a.points else []
        except store.StoreAway:
            self.held.append(a)
            self.flush()   # notes the outage and its start
            return
        new = [Trial(i, p, now) for i, p in zip(ids, a.points)]
        self.trials.update((t.id, t) for t in new)
        self.proto_ids.update(ids)
        self.sched.submit(ids)
        self.do(self.proto.on_inserted(new, self.load()))

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
            if self.stopper is not None:
                self.watch_epochs(msg)
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
            if signalable(msg) and wake_signals():  # on this host (only there a pid is one)
                self.sends.wake_on_send(source, msg["pid"])  # it may sleep long: wake it to send
            if msg.get("error"):
                raise ExperimentFailed(f"worker {source} on {msg['host']} could not import pilot "
                                       f"'{self.cfg.pilot}' (MODE={self.cfg.mode}): {msg['error']}")
            if "import_s" in msg:
                self.on_imported(source, msg)

    def watch_epochs(self, events: list[dict]) -> None:
        """Feed each epoch_end value to the stopper; HALT the trials it stops. A pilot training
        several folds per trial numbers its epochs on across them: only fold 0 is judged."""
        metric = self.cfg.stopper["metric"]
        for ev in events:
            if ev.get("kind") != "epoch_end" or ev.get("epoch") is None \
                    or not stoppers.judged(ev.get("metrics"), metric):
                continue
            t = self.trials.get(ev["trial_id"])
            if t is None or t.status is not TrialStatus.RUNNING or t.worker is None:
                continue
            if self.stopper.observe(t.id, int(ev["epoch"]), ev["metrics"][metric]):
                self.sends.isend(t.id, t.worker, Tag.HALT)

    def on_imported(self, source: int, msg: dict) -> None:
        """Per worker a line in RUN_DIR/workers.log; on the terminal one line once all said
        hello (64 lines of start-up say less than one)."""
        with open(self.cfg.run_path / "workers.log", "a") as f:
            f.write(f"worker {source} (pid {msg['pid']} on {msg['host']}) imported pilot "
                    f"'{self.cfg.pilot}' once in {msg['import_s']:.2f} s\n")
        times = [h["import_s"] for h in self.hello.values() if "import_s" in h]
        if len(times) == self.n_workers:
            hosts = {h["host"] for h in self.hello.values()}
            n = f"{self.n_workers} worker{'s' if self.n_workers > 1 else ''}"
            d = 1 if max(times) >= 1 else 2
            lo, hi = f"{min(times):.{d}f}", f"{max(times):.{d}f}"
            span = lo if lo == hi else f"{lo}–{hi}"
            on = f" on {len(hosts)} hosts" if len(hosts) > 1 else ""
            log(f"{n}{on} imported pilot '{self.cfg.pilot}' in {span} s")

    def record(self, r: Result, source: int) -> None:
        t = self.trials[r.trial_id]
        if t.status is TrialStatus.QUEUED:
            # Re-queued from a worker written off as stuck, which answered after all.
            if not self.sched.unqueue(t.id):
                return
        elif t.status is not TrialStatus.RUNNING or t.worker != source:
            return  # a late answer from a written-off worker; the first answer stands
        t.finish(r)
        if r.status is TrialStatus.STOPPED and self.stopper is not None:
            t.error = self.stopper.reasons.get(t.id)   # why, in trials.error
        self.writer.trial_changed(t)
        self.progress.finished(t)
        self.sched.observe(r.duration)
        if r.status not in (TrialStatus.COMPLETED, TrialStatus.STOPPED):
            first = (r.error or "").strip().splitlines()
            log(f"trial {r.trial_id} {r.status} on worker {r.worker}: {first[0] if first else ''}")
        if r.model_path:
            self.models.offer(t.id, r.model_path,
                              t.objective if r.status is TrialStatus.COMPLETED else None)
        self.proto.on_finished(t)

    def watchdog(self, now: float) -> None:
        """The backstop for a worker RANK that stops answering (its own watchdog kills a stuck
        trial's interpreter well before this): its trial is recorded, the rank gets no more."""
        for v in self.sched.watchdog(now):
            t = self.trials[v.trial_id]
            host = self.hello.get(v.rank, {}).get("host")
            why = (f"no result {now - v.since:.0f} s after it started, far past the time limit of "
                   f"{self.cfg.timeout} s (TIMEOUT): worker {v.rank} stopped answering and is "
                   f"taken out of service")
            log(f"worker {v.rank} stopped answering (trial {t.id} is far past its time limit); "
                f"it gets no more trials ({self.n_workers - len(self.sched.out)} left)")
            t.finish(Result(t.id, TrialStatus.TIMEOUT, v.since, now, v.rank, host, error=why))
            self.writer.trial_changed(t)
            self.progress.finished(t)
            self.proto.on_finished(t)
            for tid in v.requeued:  # never started there: back to the queue
                self.trials[tid].requeue()
                self.writer.trial_changed(self.trials[tid])
        if self.sched.all_out:
            raise ExperimentFailed("every worker is stuck in a trial past its time limit "
                                   "(TIMEOUT); the pilot does not honour the limit")

    # ---- the optimizer process ---------------------------------------------------------------
    def watch_optimizer(self, now: float) -> None:
        """Every worker idle and the optimizer owes us its next message: say so once a minute,
        and fail after OPT_TIMEOUT (an optimizer in an endless loop must not hold the job)."""
        waiting = (not self.proto.finished and self.proto.request is None and not self.held
                   and not self.sched.busy and self.proto._inserting is None)
        if not waiting:
            self.idle_since = None
            return
        if self.idle_since is None:
            self.idle_since = self.last_wait_notice = max(now, self.last_opt_msg)
        idle = now - self.idle_since
        if idle > self.cfg.opt_timeout:
            raise ExperimentFailed(
                f"the optimizer {self.cfg.algo_file} has sent nothing for {idle:.0f} s while "
                f"every worker was idle (OPT_TIMEOUT = {self.cfg.opt_timeout:g} s): it is stuck "
                f"or far too slow (its log: {self.optimizer.log_path}). Fix the optimizer, or "
                f"raise OPT_TIMEOUT if its proposals really take that long.")
        if now - self.last_wait_notice >= WAIT_NOTICE_S:
            self.last_wait_notice = now
            log(f"all {self.n_workers} workers have waited {idle / 60:.0f} min for the optimizer "
                f"(pid {self.optimizer.proc.pid if self.optimizer.proc else '?'}); the run fails "
                f"after OPT_TIMEOUT = {self.cfg.opt_timeout:g} s")

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
        """Close the experiment (and this segment) in the store, once everything is written."""
        if not self.wait_for_store():
            self.spill()
            return 0
        return store.end_experiment(self.engine, self.exp_id, status, error=error,
                                    final_message=self.proto.final_message,
                                    why_cancelled=why_cancelled)

    def wait_for_store(self) -> bool:
        """At the end nothing else is left to do: wait (up to store_wait) for a store that is
        away, so what was recorded is not lost; a stop signal ends the wait."""
        while not self.flush(force=True):
            if self.writer.away_for() > self.cfg.store_wait or self.stop_signal is not None:
                return False
            time.sleep(1.0)
        return True

    def spill(self) -> str:
        path = self.cfg.run_path / "unsaved.jsonl"
        n = self.writer.spill(path)
        sys.stderr.write(f"[emews] the store is unavailable ({self.writer.error}): {n} change(s) "
                         f"it could not take are in {path}; a resume of experiment "
                         f"{self.exp_id} imports them\n")
        return str(path)

    def stop_workers(self, code: int = 0) -> None:
        """STOP to every worker; a worker kills its trial processes and leaves (also mid-trial)."""
        for r in self.sched.ranks:
            self.sends.isend(None, r, Tag.STOP)
        deadline = time.time() + 5
        while self.sends.pending and time.time() < deadline:
            self.sends.test()
            time.sleep(0.01)
        if self.sched.out:
            # A worker rank that stopped answering never reads STOP; everything is recorded, so
            # end the job (MPI_Abort with code 0 makes mpiexec exit 0).
            log(f"ending the MPI job: worker(s) {sorted(self.sched.out)} stopped answering")
            sys.stdout.flush()
            self.comm.Abort(code)

    def finish_ok(self) -> int:
        n = self.end(ExperimentStatus.COMPLETED, "the optimizer finished before this trial was needed")
        if n:
            log(f"{n} submitted trial(s) were not needed by the optimizer and are marked cancelled")
        self.close_optimizer()
        self.print_summary()
        self.stop_workers()
        return 0

    def interrupt(self, why: str) -> int:
        """Stop cleanly and resumably: open trials and the experiment become ``interrupted``."""
        if self.server is not None:
            self.server.abort(why)
        try:
            self.optimizer.stop(grace_s=1.0)
        except Exception:  # noqa: BLE001 - recording comes first
            pass
        now = time.time()
        n_open = 0
        for t in self.trials.values():
            if t.status in (TrialStatus.QUEUED, TrialStatus.RUNNING):
                t.interrupt(f"{why}; a resume runs it again", now)
                self.writer.trial_changed(t)
                n_open += 1
        resume = (f"make workflow RESUME={self.exp_id} DB={self.db_name()}  (or: emews workflow "
                  f"--resume {self.exp_id} --db {self.db_name()})")
        where = ""
        if self.writer.flush(force=True):
            store.end_experiment(self.engine, self.exp_id, ExperimentStatus.INTERRUPTED,
                                 error=why, final_message=self.proto.final_message,
                                 why_cancelled=f"{why}; a resume runs it again",
                                 open_as=TrialStatus.INTERRUPTED)
        else:
            where = f"; what the store could not take is in {self.spill()}"
        done = sum(t.status is TrialStatus.COMPLETED for t in self.trials.values())
        sys.stderr.write(f"[emews] experiment {self.exp_id} {why}: {done} trial(s) completed, "
                         f"{n_open} interrupted{where}. Resume with: {resume}\n")
        sys.stderr.flush()
        code = 128 + self.stop_signal if self.stop_signal else 1
        self.stop_workers(code)
        return code

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
        self.stop_workers(1)
        return 1

    def print_summary(self) -> None:
        self.progress.stop()   # the summary replaces the live line
        if not self.writer.available:   # spilled: the store cannot answer (said above)
            log(f"run directory: {self.cfg.run_dir}; the store is unavailable, no summary")
            return
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
