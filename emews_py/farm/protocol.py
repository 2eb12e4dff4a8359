"""The EQ protocol of docs/eq-protocol.md as a pure state machine: a message in, actions out.

``on_message(kind, payload, load)`` takes what the optimizer sent and returns what the driver
must do (``InsertTrials``, ``Reply``, ``Finish``, ``Fail``); after inserting, the driver hands the
new trials back with ``on_inserted``. Finished trials arrive through ``on_finished``, and
``answer(load)`` returns the reply to a request that can now be answered. No sockets, no store,
no clock: every message kind is unit-tested without a process.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Union

from emews_py import eq
from emews_py.space import check_point
from emews_py.trials import Trial, TrialStatus


@dataclass(frozen=True)
class InsertTrials:
    """Insert these points as queued trials, then call ``on_inserted`` with the trials."""
    points: list


@dataclass(frozen=True)
class Reply:
    """Answer the optimizer's pending IN_get (store flushed first: results are stored before the
    optimizer sees them). ``ids`` (the trials it delivers, in order) and ``load`` (the farm's load
    it reports) are what the EQ transcript records: with the same trials, the protocol rebuilds
    exactly this text when a resume replays the transcript."""
    text: str
    ids: tuple = ()
    load: dict | None = None


@dataclass(frozen=True)
class Finish:
    """The optimizer is done: queued trials are not wanted; running ones finish and are recorded.
    ``warning`` is set when it left without saying DONE."""
    final_message: str | None
    warning: str | None = None


@dataclass(frozen=True)
class Fail:
    why: str


Action = Union[InsertTrials, Reply, Finish, Fail]

PLAIN, BATCH, SUBMIT, RESULTS = "plain", "batch", "submit", "results"


def parse_batch(text: str) -> list:
    """A plain EMEWS batch: JSON values joined by ';'. Decoded value by value (never split on ';',
    which may occur inside a string value); raises ValueError saying where it went wrong."""
    dec = json.JSONDecoder()
    out, i, n = [], 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ValueError(f"point {len(out) + 1}: {e}") from None
        out.append(value)
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return out
        if text[i] != ";":
            raise ValueError(f"expected ';' after point {len(out)} at character {i}")
        i += 1


_WITH_OBJECTIVE = (TrialStatus.COMPLETED, TrialStatus.STOPPED)


def plain_value(t: Trial, impute: float) -> float:
    """What a plain EMEWS optimizer receives: ``Trial.value``, and for a trial the early stopper
    ended its last objective (it cannot tell statuses apart, and the value is a real measurement
    of that configuration, worse than it would have reached)."""
    if t.status is TrialStatus.STOPPED and t.objective is not None:
        return math.inf if math.isinf(t.objective) else t.objective
    return t.value(impute)


class Protocol:
    def __init__(self, algo_file: str, settings: dict, space: dict | None = None,
                 impute: float = math.nan, history=None):
        self.algo_file = algo_file
        self.history = history               # exp_id -> store.history(...) dict, or None if unknown
        self.settings = settings
        self.space = space
        self.impute = impute
        self.request: tuple | None = None    # the optimizer's message awaiting an answer
        self._inserting: str | None = None   # PLAIN/BATCH/SUBMIT between InsertTrials and on_inserted
        self.waiting: set[int] = set()       # trials of a plain/batch request not finished yet
        self.pending: set[int] = set()       # submitted, not yet returned by results
        self.done: deque[Trial] = deque()    # submitted, finished, not yet returned
        self.n_finished = 0
        self.n_submitted = 0                 # points inserted as trials (against max.budget)
        self.expect_final = False
        self.finished = False
        self.final_message: str | None = None

    @property
    def is_r(self) -> bool:
        return self.algo_file.endswith(".R")

    # ---- messages in -------------------------------------------------------------------------
    def on_message(self, kind: str, payload: str, load: dict) -> list[Action]:
        if kind == eq.ERROR:
            return [Fail(f"the optimizer {self.algo_file} stopped with an error:\n{payload}")]
        if kind == eq.BYE:
            if self.finished:
                return []
            self.finished = True
            return [Finish(None, "the optimizer exited without sending DONE; ending the experiment")]
        if self.expect_final:
            self.final_message, self.finished, self.expect_final = payload, True, False
            return [Finish(payload)]
        if self.request is not None or self._inserting is not None:
            return [Fail(f"the optimizer sent {payload[:200]!r} before reading the answer to its "
                         f"previous message; call IN_get() after each OUT_put().")]
        s = payload.strip()
        if s == eq.PARAMS:
            return [Reply(self._settings_text())]
        if s in eq.END_MARKERS:
            self.expect_final = True
            return []
        try:
            values = parse_batch(s)
        except ValueError as e:
            return [self._bad(payload, e)]
        if len(values) == 1 and isinstance(values[0], dict) and "eq" in values[0]:
            return self._extension(values[0], load)
        for v in values:
            if not isinstance(v, dict):
                return [self._bad(json.dumps(v), "it is not a JSON object")]
        return self._insert(PLAIN, values)

    def _settings_text(self) -> str:
        if self.is_r:
            from emews_py.rbridge import r_settings_text
            return r_settings_text(self.settings)
        return json.dumps(dict(self.settings, space=self.space))

    def _extension(self, msg: dict, load: dict) -> list[Action]:
        op = msg["eq"]
        if op in (BATCH, SUBMIT):
            points = msg.get("points")
            if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
                return [self._bad(json.dumps(msg), "'points' must be a list of JSON objects")]
            return self._insert(op, points)
        if op == RESULTS:
            n = msg.get("min", 1)
            if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n):
                return [self._bad(json.dumps(msg), "'min' must be a number of results")]
            self.request = (RESULTS, max(0, int(n)))
            return self.answer(load)
        if op == "status":
            return [Reply(json.dumps(dict(self._load(load), eq="status")), load=load)]
        if op == "history":
            return [self._history(msg)]
        return [self._bad(json.dumps(msg), f"unknown extension message eq = {op!r}")]

    def _history(self, msg: dict) -> Reply | Fail:
        """An earlier experiment's space and finished trials (mlrMBO's warm.start), each trial in
        the shape of ``result`` (so non-finite objectives follow the same rule)."""
        exp = msg.get("experiment")
        if isinstance(exp, float) and exp.is_integer():
            exp = int(exp)
        if isinstance(exp, bool) or not isinstance(exp, int) or exp < 1:
            return Fail(f"the optimizer {self.algo_file} asked for the history of experiment "
                        f"{json.dumps(msg.get('experiment'))}, which is not an experiment id: "
                        f"{{\"eq\": \"history\", \"experiment\": ID}} takes the positive integer "
                        f"id of an experiment in this run's store (`emews status` lists them). "
                        f"Fix the id (mlrMBO: SETTINGS=\"warm.start = ID\").")
        if self.history is None:
            return Fail(f"the optimizer {self.algo_file} asked for the history of experiment {exp}, "
                        f"but there is no store to answer it here (only a run of the farm, `make "
                        f"workflow`, has one). Remove the warm start.")
        h = self.history(exp)
        if h is None:
            return Fail(f"the optimizer {self.algo_file} asked for the history of experiment {exp} "
                        f"(warm start), but the store of this run has no experiment {exp}. A warm "
                        f"start reads an earlier experiment of the same store (the same DB; "
                        f"`emews sql \"SELECT id, name, status FROM experiments\"` lists them). "
                        f"Fix the id (SETTINGS=\"warm.start = ID\") or run with the DB that holds "
                        f"experiment {exp}.")
        results = [self.result(Trial(r["id"], r["params"], 0.0, TrialStatus(r["status"]),
                                     objective=r["objective"], metrics=r["metrics"],
                                     stopped_epoch=r.get("stopped_epoch")))
                   for r in h["results"]]
        return Reply(json.dumps({"eq": "history", "experiment": h["experiment"],
                                 "name": h.get("name"), "space": h.get("space"),
                                 "results": results}))

    def _insert(self, how: str, points: list[dict]) -> list[Action]:
        budget = self.settings.get("max.budget")
        if isinstance(budget, (int, float)) and self.n_submitted + len(points) > budget:
            left = max(0, int(budget) - self.n_submitted)
            return [Fail(f"the optimizer {self.algo_file} proposed {len(points)} point(s) but only "
                         f"{left} trial(s) of the budget remain: max.budget = {int(budget)} and "
                         f"{self.n_submitted} trial(s) were already submitted (first point over "
                         f"the budget: point {left + 1} of the batch: "
                         f"{json.dumps(points[left])[:300]}). Propose at most max.budget minus "
                         f"the trials already submitted, e.g. n <- min(q, budget - evaluated); "
                         f"fix the optimizer or raise BUDGET.")]
        if self.space:
            for i, p in enumerate(points):
                why = check_point(self.space, p)
                if why:
                    return [Fail(f"the optimizer {self.algo_file} proposed a point outside the "
                                 f"search space {self.space.get('source')}: {why} (point {i + 1} "
                                 f"of the batch: {json.dumps(p)[:300]}). Fix the optimizer or "
                                 f"widen the space.")]
        self.n_submitted += len(points)
        self._inserting = how
        return [InsertTrials(points)]

    def on_inserted(self, trials: list[Trial], load: dict) -> list[Action]:
        how, self._inserting = self._inserting, None
        ids = [t.id for t in trials]
        if how == SUBMIT:
            self.pending.update(ids)
            return [Reply(json.dumps({"eq": "submitted", "ids": ids}))]
        self.waiting = set(ids)
        self.request = (how, trials)
        return self.answer(load)

    def _bad(self, text: str, why) -> Fail:
        return Fail(f"the optimizer {self.algo_file} sent a message that is not valid: "
                    f"{text[:300]!r} ({why}). OUT_put takes 'Params', 'DONE'/'FINAL', a batch of "
                    f"';'-joined JSON objects (one per point, e.g. '{{\"x1\": 0.5}};{{\"x1\": 2}}') "
                    f"or an extension message (docs/eq-protocol.md). Fix the optimizer script.")

    # ---- trials finishing --------------------------------------------------------------------
    def on_finished(self, trial: Trial) -> None:
        self.n_finished += 1
        self.waiting.discard(trial.id)
        if trial.id in self.pending:
            self.pending.discard(trial.id)
            self.done.append(trial)

    def forget(self, ids) -> None:
        """Trials cancelled before they ran: nobody waits for them any more."""
        for i in ids:
            self.pending.discard(i)
            self.waiting.discard(i)

    # ---- answers out -------------------------------------------------------------------------
    def _load(self, load: dict) -> dict:
        return {"pending": len(self.pending), "free": load["free"], "workers": load["workers"],
                "completed": self.n_finished}

    @staticmethod
    def result(t: Trial) -> dict:
        # A trial the early stopper (STOPPER) ended carries the objective its pilot returned at the
        # stop (e.g. the validation loss of the model as stopped) with status "stopped", so an
        # optimizer may use it or treat it apart (docs/stopping.md), and the epoch it reached.
        done = t.status in _WITH_OBJECTIVE
        obj = t.objective if done else None
        if obj is not None and math.isinf(obj):
            # +-inf (a diverged loss) is worse than every finite value: +Infinity, as the text R
            # and Python parse (JSON has no infinity).
            obj = "Infinity"
        out = {"id": t.id, "params": t.params, "status": TrialStatus(t.status).value,
               "objective": obj, "metrics": t.metrics}
        if TrialStatus(t.status) == TrialStatus.STOPPED:   # the epoch it ended at (0-based)
            out["stopped_epoch"] = t.stopped_epoch
        return out

    def answer(self, load: dict) -> list[Action]:
        """The reply to the pending request, if it can be given now."""
        if self.request is None:
            return []
        how, arg = self.request
        if how in (PLAIN, BATCH):
            if self.waiting:
                return []
            if how == PLAIN:
                text = ";".join(repr(plain_value(t, self.impute)) for t in arg)
            else:
                text = json.dumps({"eq": "results", "results": [self.result(t) for t in arg]})
            ids = tuple(t.id for t in arg)
        else:
            # min = 0 polls; with nothing pending the answer is immediate (and empty), never a hang
            need = min(arg, len(self.done) + len(self.pending))
            if len(self.done) < need:
                return []
            out = [self.result(t) for t in self.done]
            ids = tuple(t.id for t in self.done)
            self.done.clear()
            text = json.dumps(dict(self._load(load), eq="results", results=out))
        self.request = None
        return [Reply(text, ids, load)]
