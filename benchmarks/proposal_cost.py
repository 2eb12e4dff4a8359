"""Time for r_algorithms/mlrMBO.R to propose q = 1, 16, 64 and 256 points after n = 100, 1,000,
5,000 and 20,000 evaluations in a 10-dimensional mixed space (5 numeric, 2 integer, 2 discrete
with 4 and 3 values, 1 logical), and how that cost grows with n and q.

Targets (issue 9 item 2): the proposal cost grows sublinearly in n (printed: CPU at the largest n
over CPU at n = 1,000, per q, against the ratio of the n themselves), and the cost per proposed
point does not grow with q (printed: CPU per point at each q over that at q = 16). The old target
of the first issue, 64 points after 1,000 evaluations within 10 s, is printed too.

The columns split the time into: fit (forest, plus the leaf statistics for the standard error),
predict (surrogate mean and se for all focus-search candidates), search (sampling, shrinking,
sorting, duplicate checks) and select (distinct-point selection); `fitted` is the number of points
the surrogate was fitted on (fit.max bounds it; "all" when the proposal did not go through it).
The split and cpu_s are CPU time of the single-threaded R process (threads = 1); wall_s is printed
too but on a shared machine it mostly measures the other processes.

--baseline SETTINGS runs the same grid again with those settings added (e.g. "fit.max = Inf",
every point fitted, as before issue 9) and prints the CPU ratios of the two runs.

    .venv/bin/python benchmarks/proposal_cost.py [--n 100,1000,5000,20000] [--q 1,16,64,256]
        [--settings "num.trees = 500"] [--baseline "fit.max = Inf"] [--reps 1]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

R_CODE = REPO / "benchmarks" / "proposal_cost.R"


def run(settings: str, ns: str, qs: str, reps: int) -> tuple[list[list[str]], str] | None:
    p = subprocess.run(["Rscript", "--vanilla", str(R_CODE), str(REPO), settings, str(reps), ns, qs],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, end="")
        print(p.stderr[-3000:], file=sys.stderr)
        return None
    rows = [l.split() for l in p.stdout.splitlines() if l.strip() and l.split()[0].isdigit()]
    return rows, p.stdout


def cpu_table(rows: list[list[str]]) -> dict[tuple[int, int], float]:
    """(n, q) -> mean CPU seconds over the repetitions."""
    acc: dict[tuple[int, int], list[float]] = {}
    for r in rows:
        acc.setdefault((int(r[0]), int(r[1])), []).append(float(r[3]))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def growth(cpu: dict[tuple[int, int], float], label: str) -> None:
    ns = sorted({n for n, _ in cpu}); qs = sorted({q for _, q in cpu})
    if 1000 in ns and ns[-1] > 1000:
        top = ns[-1]
        parts = [f"q={q}: {cpu[(top, q)] / cpu[(1000, q)]:.2f}" for q in qs if (1000, q) in cpu and (top, q) in cpu]
        worst = max(cpu[(top, q)] / cpu[(1000, q)] for q in qs if (1000, q) in cpu and (top, q) in cpu)
        print(f"{label}growth with n, CPU at n={top:,} / n=1,000 (n grew {top / 1000:g}x): " + ", ".join(parts)
              + f" -> sublinear {'MET' if worst < top / 1000 else 'NOT MET'}")
    if len(qs) > 1:
        ref = 16 if 16 in qs else qs[0]
        for n in ns:
            per = {q: cpu[(n, q)] / q * 1000 for q in qs if (n, q) in cpu}
            print(f"{label}n={n:,}: CPU ms per point " + ", ".join(f"q={q}: {v:.0f}" for q, v in per.items())
                  + f"; largest q / q={ref}: {per[qs[-1]] / per[ref]:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="", help="extra mlrMBO settings (R argument text)")
    ap.add_argument("--baseline", default=None, help="settings of a second run to compare with, e.g. 'fit.max = Inf'")
    ap.add_argument("--n", default="100,1000,5000,20000", help="evaluations before the proposal")
    ap.add_argument("--q", default="1,16,64,256", help="points per proposal")
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args(argv)
    res = run(a.settings, a.n, a.q, a.reps)
    print("mlrMBO proposal cost, 10-D mixed space (seconds; cpu_s and fit/predict/search/select are CPU time)")
    if res is None:
        return 1
    rows, out = res
    print(out, end="")
    cpu = cpu_table(rows)
    growth(cpu, "")
    for r in rows:
        if r[0] == "1000" and r[1] == "64":
            parts = dict(zip(["fit", "predict", "search", "select"], map(float, r[5:9])))
            dom = max(parts, key=parts.get)
            print(f"64 points after 1,000 evaluations: {r[3]} s CPU ({r[2]} s wall) -> target <= 10 s "
                  f"{'MET' if float(r[3]) <= 10 else 'NOT MET'}; dominated by {dom} ({parts[dom]:.2f} s)")
            break
    if a.baseline is not None:
        settings = ", ".join(s for s in (a.settings, a.baseline) if s)
        print(f"\nbaseline ({settings}):")
        bres = run(settings, a.n, a.q, a.reps)
        if bres is None:
            return 1
        print(bres[1], end="")
        bcpu = cpu_table(bres[0])
        growth(bcpu, "baseline ")
        print("CPU of this run / baseline: " + ", ".join(
            f"n={n:,} q={q}: {cpu[(n, q)] / bcpu[(n, q)]:.2f}" for n, q in sorted(cpu) if (n, q) in bcpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
