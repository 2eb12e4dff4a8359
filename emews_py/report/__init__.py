"""``emews report``: one self-contained HTML file for an experiment (plotly.js and the data
inline, nothing fetched when it is written or viewed), readable while the experiment runs.

``render(engine, exp_id) -> str`` builds the page; ``data.load`` reads the store, ``figures``
turns it into charts, ``report.js`` draws them in the browser and records what it drew."""
from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path

from emews_py.report.data import TOP_TABLE, ReportError, load  # noqa: F401
from emews_py.report.figures import STATUS_COLORS, all_charts

HERE = Path(__file__).resolve().parent


def plotly_js() -> str:
    """plotly.js as shipped in the ``plotly`` wheel (no CDN)."""
    from importlib.resources import files
    return files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")


def _script_json(v) -> str:
    # JSON inside <script>: "</" would end the element early
    return json.dumps(v, allow_nan=False, default=str).replace("</", "<\\/")


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _num(v, digits: int = 5) -> str:
    return "" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))


def _dur(s) -> str:
    if s is None:
        return ""
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def _when(t) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _status(s: str) -> str:
    return f'<span class="st" style="background:{STATUS_COLORS.get(s, "#999")}">{_e(s)}</span>'


def _params(p: dict | None) -> str:
    return "<code>" + _e(", ".join(f"{k}={_num(v)}" for k, v in (p or {}).items())) + "</code>"


def _space_row(p: dict) -> list[str]:
    if "values" in p:
        rng = ", ".join(str(v) for v in p["values"])
    else:
        rng = f"{_num(p.get('lower'))} .. {_num(p.get('upper'))}" if "lower" in p else ""
    return [_e(p["id"]), _e(p.get("type", "")), _e(rng),
            "yes" if p.get("trafo") else "", "yes" if p.get("requires") else ""]


def _chart_divs(charts: list[dict], cls: str = "chart") -> str:
    out = []
    for c in charts:
        if c["empty"]:
            out.append(f'<div class="{cls} empty" id="chart-{_e(c["id"])}"><h3>{_e(c["title"])}'
                       f'</h3><p class="note">{_e(c["empty"])}</p></div>')
        else:
            out.append(f'<div class="{cls}" id="chart-{_e(c["id"])}"></div>')
    return "".join(out)


def render(engine, exp_id: int, now=None) -> str:
    d = load(engine, exp_id, now=now)
    st, rows = d["status"], d["trials"]
    charts = all_charts(d)
    flat = [c for group in charts.values() for c in group]

    counts = ", ".join(f"{n} {s}" for s, n in sorted(st["counts"].items()))
    budget = f"{st['completed']}/{st['budget']}" if st["budget"] else str(st["completed"])
    best = st["best_trial"]
    facts = [("status", _status(st["shown"]) + (" (the driver has been silent: its job is gone; "
                                                 "resume it)" if st["stale"] else "")),
             ("pilot / algorithm", _e(f"{st['pilot']} / {st['algorithm']}")),
             ("trials completed", _e(budget) + f" &nbsp; ({_e(counts)})"),
             ("best", (f"{_num(best['objective'])} (trial {best['id']}) {_params(best['params'])}"
                       if best else "none yet")),
             ("elapsed", _e(_dur(st["elapsed_s"]))),
             ("mode / workers", _e(f"{st['mode'] or ''} / {st['workers'] or ''}")),
             ("started / finished", _e(f"{_when(st['started_at'])} / "
                                       f"{_when(st['finished_at']) or '-'}")),
             ("run directory", f"<code>{_e(st['run_dir'])}</code>")]
    if st["error"]:
        facts.append(("error", f"<pre>{_e(st['error'][:4000])}</pre>"))
    if d["final_message"]:
        facts.append(("optimizer's final message", f"<pre>{_e(d['final_message'][:2000])}</pre>"))
    facts_html = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in facts)

    top = _table(["rank", "trial", "objective", "worker", "seconds", "attempts", "params"],
                 [[str(i), str(r["id"]), _num(r["objective"]), _e(r["worker"]),
                   _num(r["duration_s"], 3), _e(r["attempts"]), _params(r["params"])]
                  for i, r in enumerate(d["ranked"][:TOP_TABLE], 1)]) \
        if d["ranked"] else '<p class="note">No completed trial with an objective yet.</p>'
    bad = [r for r in rows if r["status"] in ("failed", "timeout")]
    failures = _table(["trial", "status", "worker", "params", "error"],
                      [[str(r["id"]), _status(r["status"]), _e(r["worker"]), _params(r["params"]),
                        f"<pre>{_e((r['error'] or '')[-3000:])}</pre>"] for r in bad]) \
        if bad else '<p class="note">No failed or timed-out trial.</p>'
    settings = _table(["setting", "value"],
                      [[_e(k), f"<code>{_e(json.dumps(v))}</code>"]
                       for k, v in sorted(d["settings"].items())]) \
        if d["settings"] else '<p class="note">No settings recorded.</p>'
    space = _table(["parameter", "type", "range / values", "trafo", "requires"],
                   [_space_row(p) for p in d["space"]])
    segs = _table(["job", "host", "pid", "procs", "workers", "started", "ended", "elapsed",
                   "status", "error"],
                  [[str(s["number"]), _e(s["host"]), _e(s["pid"]), _e(s["procs"]),
                    _e(s["workers"]), _e(_when(s["started_at"])), _e(_when(s["ended_at"])),
                    _e(_dur(s["elapsed_s"])), _status(s["status"]), _e(s["error"])]
                   for s in st["segments"]]) \
        if st["segments"] else '<p class="note">No run segments recorded (a store made before ' \
                               'schema 0003, or the job has not started).</p>'

    title = f"emews report: experiment {st['id']} {st['name']}"
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    page = (HERE / "template.html").read_text(encoding="utf-8")
    parts = {
        "TITLE": _e(title), "GENERATED": _e(generated), "FACTS": facts_html,
        "RUNNING_NOTE": ('<p class="note">The experiment is still running: this page shows it as '
                         'of the time above; run <code>emews report</code> again to update it.</p>'
                         if st["shown"] == "running" else ""),
        "CONVERGENCE": _chart_divs(charts["convergence"]),
        "TIMELINE": _chart_divs(charts["timeline"]),
        "CURVES": _chart_divs(charts["curves"]),
        "PARAMS": _chart_divs(charts["params"], "chart small"),
        "PARALLEL": _chart_divs(charts["parallel"]),
        "TOP": top, "FAILURES": failures, "N_FAILED": str(len(bad)), "SETTINGS": settings,
        "SPACE": space, "SPACE_SOURCE": _e(d["space_source"] or ""), "SEGMENTS": segs,
        "CHART_DATA": _script_json(flat),
        "PLOTLY": plotly_js().replace("</script", "<\\/script"),
        "REPORT_JS": (HERE / "report.js").read_text(encoding="utf-8"),
    }
    # one pass over the template: text from the store is never searched for placeholders
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts[m.group(1)], page)
