"""EQ/Py optimizer used by benchmarks/dispatch.py: submits N no-op points and waits for all.
N comes from the settings (max.budget); the final message carries the measured rate."""
import time

import eqpy


def run():
    s = eqpy.settings()
    n = int(s["max.budget"])
    chunk = int(s.get("chunk", 20000))
    t0 = time.perf_counter()
    done = submitted = 0
    while submitted < min(n, 2 * chunk):  # keep two chunks ahead of the farm
        k = min(chunk, n - submitted)
        eqpy.submit([{"function": "noop"}] * k)
        submitted += k
    while done < n:
        r = eqpy.results(min=1)
        done += len(r["results"])
        if submitted < n and r["pending"] < chunk:
            k = min(chunk, n - submitted)
            eqpy.submit([{"function": "noop"}] * k)
            submitted += k
    dt = time.perf_counter() - t0
    eqpy.done({"trials": n, "seconds": dt, "trials_per_s": n / dt})
