"""App mode: one trial in a process of its own (``MODE=app``).

The worker writes the trial's parameters to a JSON file and starts
``python -m emews_py.app --pilot P --params params.json --result result.json --events events.jsonl``;
no value ever passes through a shell. Events are appended to the JSON-lines file as they happen
(so a trial killed at its time limit keeps what it reported) and the result is written last.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback

from emews_py.pilot import TrialContext, load_pilot, run_trial
from emews_py.trials import TrialStatus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emews_py.app")
    ap.add_argument("--pilot", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--trial-id", type=int, default=0)
    ap.add_argument("--run-dir", default=".")
    ap.add_argument("--timeout", type=float, default=None)
    a = ap.parse_args(argv)
    with open(a.params) as f:
        params = json.load(f)
    ev_out = open(a.events, "a")

    def sink(ev: dict) -> None:
        ev_out.write(json.dumps(ev) + "\n")
        ev_out.flush()

    deadline = time.time() + a.timeout if a.timeout else None
    # The worker sends SIGUSR2 when the early stopper (STOPPER) wants this training ended; the
    # Keras callback sees it at the next epoch end. A signal: nothing to poll, no file per epoch.
    halt = []
    signal.signal(signal.SIGUSR2, lambda *_: halt.append(True))
    ctx = TrialContext(a.trial_id, a.run_dir, deadline, sink, halted=lambda: bool(halt))
    try:
        status, res, error = run_trial(load_pilot(a.pilot), params, ctx, a.timeout)
    except Exception as e:  # noqa: BLE001 - the pilot could not be imported: the trial failed
        status, res, error = TrialStatus.FAILED, {}, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    if status is TrialStatus.FAILED:
        sys.stderr.write(error)
    out = {"status": status.value, "error": error, "objective": res.get("objective"),
           "metrics": res.get("metrics"), "model_path": res.get("model_path"),
           "stopped_epoch": ctx.stopped_epoch}
    ev_out.close()
    with open(a.result, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
