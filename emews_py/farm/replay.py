"""Resume: what an earlier job of an experiment left in the store, and its EQ transcript.

A resumed experiment restarts its optimizer with the same settings and seed, and answers it from
the transcript (``eq_messages``) while checking that every message it sends is the recorded one:

- ``in`` rows are the optimizer's messages, verbatim. A message that inserted trials was stored
  in the same transaction as its trials, so the n-th such message owns the next n trial ids of
  the experiment, in id order (``take_ids``).
- ``out`` rows are the answers, stored as the trial ids they delivered and the farm's load they
  reported (``{"ids": [...], "load": {...}}``). The driver feeds exactly those trials, in that
  order, to the protocol, which then rebuilds exactly the answer that was sent (results are read
  back from the store; nothing re-runs).

When no recorded message is left, the run goes live: completed (and failed/timeout) trials the
optimizer has not seen yet are handed to the protocol, and trials that had not finished run
again. A message that differs from its recorded one (the optimizer's code or settings changed)
ends the run with both texts; ``warm.start`` (mlrMBO) is the way to reuse results then.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import deque
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from emews_py.farm.stoppers import judged
from emews_py.store.schema import eq_messages, events, trials
from emews_py.trials import Trial, TrialStatus, objective_or_none

# STOPPED: an early stopper ended it (STOPPER); a resume does not train it again
FINISHED = (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.TIMEOUT, TrialStatus.STOPPED)


@dataclass(frozen=True)
class Message:
    seq: int
    direction: str   # in | out
    payload: str


def _epoch(d: dt.datetime | None) -> float | None:
    return None if d is None else d.replace(tzinfo=dt.timezone.utc).timestamp()


def load_trials(engine: Engine, exp_id: int) -> list[Trial]:
    """The experiment's trials as rank 0's records, in id order."""
    with engine.connect() as c:
        rows = c.execute(select(trials).where(trials.c.experiment_id == exp_id)
                         .order_by(trials.c.id)).mappings().all()
    out = []
    for r in rows:
        t = Trial(r["id"], r["params"], _epoch(r["submitted_at"]), TrialStatus(r["status"]),
                  r["worker"], r["host"], _epoch(r["started_at"]), _epoch(r["finished_at"]),
                  objective_or_none(r["objective"]), r["metrics"], r["error"], r["attempts"] or 0,
                  stopped_epoch=r.get("stopped_epoch"))
        out.append(t)
    return out


def epoch_history(engine: Engine, exp_id: int, metric: str) -> list[tuple[int, int, object]]:
    """(trial, epoch, value) of every fold-0 ``epoch_end`` event carrying ``metric`` of the
    experiment's FINISHED trials, in the order they were stored: the peers an early stopper
    (STOPPER) had seen when the earlier job ended, so a resumed job judges its trainings against
    them instead of starting with no peers. Trials that had not finished run again and report
    afresh, so their old events are left out."""
    done = [s.value for s in FINISHED]
    with engine.connect() as c:
        rows = c.execute(select(events.c.trial_id, events.c.epoch, events.c.metrics)
                         .join(trials, trials.c.id == events.c.trial_id)
                         .where(trials.c.experiment_id == exp_id, trials.c.status.in_(done),
                                events.c.kind == "epoch_end", events.c.epoch.is_not(None))
                         .order_by(events.c.id)).all()
    return [(tid, int(epoch), m[metric]) for tid, epoch, m in rows if judged(m, metric)]


def load_transcript(engine: Engine, exp_id: int) -> list[Message]:
    with engine.connect() as c:
        rows = c.execute(select(eq_messages.c.seq, eq_messages.c.direction, eq_messages.c.payload)
                         .where(eq_messages.c.experiment_id == exp_id)
                         .order_by(eq_messages.c.seq)).all()
    return [Message(*r) for r in rows]


class Transcript:
    """The recorded messages not replayed yet, and the trial ids not yet claimed by a message."""

    def __init__(self, messages: list[Message], trial_ids: list[int]):
        self.messages = deque(messages)
        self.unclaimed = deque(sorted(trial_ids))
        self.n_replayed = 0
        self.next_seq = messages[-1].seq + 1 if messages else 0

    @property
    def active(self) -> bool:
        """A recorded optimizer message is still to come."""
        return any(m.direction == "in" for m in self.messages)

    def next_in(self) -> Message:
        while self.messages and self.messages[0].direction != "in":
            self.messages.popleft()   # an answer recorded whose question was not: cannot happen
        self.n_replayed += 1
        return self.messages.popleft()

    def next_out(self) -> dict | None:
        """The recorded answer to the message just taken, or None if it was never sent."""
        if self.messages and self.messages[0].direction == "out":
            return json.loads(self.messages.popleft().payload)
        return None

    def take_ids(self, n: int) -> list[int]:
        return [self.unclaimed.popleft() for _ in range(min(n, len(self.unclaimed)))]


def divergence(n: int, sent: str, recorded: str, exp_id: int) -> str:
    """Why a resume stops when the optimizer does not repeat its transcript."""
    i = next((k for k, (a, b) in enumerate(zip(sent, recorded)) if a != b), min(len(sent), len(recorded)))
    lo = max(0, i - 60)
    return (f"the optimizer diverged from the transcript of experiment {exp_id} at its message "
            f"{n}: it sent {sent[lo:i + 120]!r} where the recorded run sent "
            f"{recorded[lo:i + 120]!r} (first difference at character {i}). A resume restarts "
            f"the optimizer with the same settings and seed and replays its answers, which only "
            f"works if its code, settings and inputs are unchanged. Restore them, or start a new "
            f"experiment that reuses these results (mlrMBO: SETTINGS=\"warm.start = {exp_id}\").")
