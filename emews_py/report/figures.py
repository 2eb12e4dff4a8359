"""The report's charts as plotly figure specs (plain dicts: data + layout), built from
``data.load``. Each chart says what it should draw (``expect``: points, bars or lines) so a test
can compare that with what the browser drew; a chart with nothing to draw carries ``empty``, the
sentence the page shows in its place."""
from __future__ import annotations

import math

from emews_py.report.data import BEST_CURVES, BEST_PARALLEL, best_so_far
from emews_py.trials import TrialStatus

# one colour per trial status, the same in every chart and table
STATUS_COLORS = {"completed": "#2c7fb8", "running": "#41ab5d", "queued": "#bdbdbd",
                 "failed": "#d7301f", "timeout": "#fd8d3c", "cancelled": "#969696",
                 "interrupted": "#807dba"}


def _chart(cid: str, title: str, data=None, layout=None, empty: str | None = None,
           expect: dict | None = None, height: int = 340) -> dict:
    base = {"title": {"text": title, "x": 0.01, "font": {"size": 15}}, "height": height,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 45}, "hovermode": "closest"}
    base.update(layout or {})
    return {"id": cid, "title": title, "data": data or [], "layout": base,
            "empty": empty, "expect": expect or {}}


def _why_no_objective(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    told = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"No completed trial with an objective yet ({told})."


def convergence(d: dict) -> list[dict]:
    pts = best_so_far(d["trials"])
    if not pts:
        msg = _why_no_objective(d["trials"])
        return [_chart("best_by_trial", "Best objective so far, by trial", empty=msg),
                _chart("best_by_time", "Best objective so far, by wall time", empty=msg)]
    out = []
    for cid, title, key, xtitle in (
            ("best_by_trial", "Best objective so far, by trial", "n", "completed trials"),
            ("best_by_time", "Best objective so far, by wall time", "end_s",
             "seconds since the start")):
        xs = [p[key] for p in pts]
        text = [f"trial {p['id']}" for p in pts]
        out.append(_chart(cid, title, [
            {"type": "scatter", "mode": "markers", "name": "objective", "x": xs,
             "y": [p["objective"] for p in pts], "text": text,
             "marker": {"size": 6, "color": "#9ecae1"}},
            {"type": "scatter", "mode": "lines", "name": "best so far", "x": xs,
             "y": [p["best"] for p in pts], "line": {"shape": "hv", "color": "#08519c",
                                                      "width": 2}}],
            {"xaxis": {"title": {"text": xtitle}}, "yaxis": {"title": {"text": "objective"}},
             "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}},
            expect={"points": len(pts), "lines": 1}))
    return out


def timeline(d: dict) -> dict:
    ran = [r for r in d["trials"] if r["start_s"] is not None and r["end_s"] is not None]
    u = d["utilization"]
    util = (f"utilization {u['value']:.2f} = {u['busy_s']:.0f} busy worker-seconds / "
            f"({u['workers']} workers x {u['makespan_s']:.0f} s)"
            if u and u["value"] is not None else "utilization: n/a")
    title = f"Models running over time ({util})"
    if not ran:
        return _chart("timeline", title, empty="No trial has started yet.")
    workers = sorted({r["worker"] for r in ran if r["worker"] is not None})
    data = []
    for status, color in STATUS_COLORS.items():
        sel = [r for r in ran if r["status"] == status]
        if not sel:
            continue
        data.append({"type": "bar", "orientation": "h", "name": status,
                     "y": [f"worker {r['worker']}" for r in sel],
                     "base": [r["start_s"] for r in sel],
                     "x": [max(r["end_s"] - r["start_s"], 1e-3) for r in sel],
                     "text": [f"trial {r['id']}" for r in sel], "textposition": "none",
                     "hovertemplate": "%{text}<br>%{base:.1f} s + %{x:.1f} s<extra>"
                                      + status + "</extra>",
                     "marker": {"color": color, "line": {"color": "white", "width": 0.5}}})
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": s["start_s"], "x1": s["start_s"],
               "y0": 0, "y1": 1, "line": {"dash": "dot", "color": "#555"}}
              for s in d["segments_s"][1:] if s["start_s"] is not None]
    return _chart("timeline", title, data, {
        "barmode": "overlay", "bargap": 0.25, "shapes": shapes,
        "xaxis": {"title": {"text": "seconds since the start"}},
        "yaxis": {"categoryorder": "array",
                  "categoryarray": [f"worker {w}" for w in reversed(workers)]},
        "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}},
        expect={"bars": len(ran)}, height=max(260, 80 + 22 * len(workers)))


def learning_curves(d: dict) -> dict:
    title = f"Learning curves of the {BEST_CURVES} best trials (loss solid, val_loss dashed)"
    if not d["curves"]:
        why = ("No epoch_end events in this experiment: its pilot records none (e.g. bench) "
               "or no trial finished an epoch yet." if not d["any_epoch_events"] else
               "None of the best trials has epoch_end events.")
        return _chart("curves", title, empty=why if d["ranked"] else
                      why + " " + _why_no_objective(d["trials"]))
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    data, lines = [], 0
    for i, (tid, evs) in enumerate(d["curves"].items()):
        folds = sorted({e["fold"] for e in evs}, key=lambda f: (f is None, f))
        for fold in folds:
            fe = [e for e in evs if e["fold"] == fold]
            x = [e["epoch"] + 1 if e["epoch"] is not None else k + 1 for k, e in enumerate(fe)]
            name = f"trial {tid}" + (f" fold {fold}" if len(folds) > 1 else "")
            for key, dash in (("loss", "solid"), ("val_loss", "dash")):
                ys = [e[key] for e in fe]
                if all(v is None for v in ys):
                    continue
                data.append({"type": "scatter", "mode": "lines+markers", "x": x, "y": ys,
                             "name": f"{name} {key}", "legendgroup": name,
                             "showlegend": key == "loss",
                             "line": {"color": palette[i % len(palette)], "dash": dash},
                             "marker": {"size": 4}})
                lines += 1
    return _chart("curves", title, data, {"xaxis": {"title": {"text": "epoch"}, "dtick": 1},
                                          "yaxis": {"title": {"text": "loss"}}},
                  expect={"lines": lines})


def _log_axis(vals: list[float], p: dict) -> bool:
    """A log axis for a positive numeric parameter that spans two decades, or one with a trafo
    (e.g. learning_rate = 10^x) that spans one."""
    pos = [v for v in vals if v is not None]
    if p.get("type") != "numeric" or not pos or min(pos) <= 0:
        return False
    ratio = max(pos) / min(pos)
    return ratio >= 100 or (bool(p.get("trafo")) and ratio >= 10)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def params_vs_objective(d: dict) -> list[dict]:
    ok = [r for r in d["trials"] if r["status"] == TrialStatus.COMPLETED.value
          and r["objective"] is not None]
    out = []
    for p in d["space"]:
        pid = p["id"]
        cid = f"param_{pid}"
        title = f"{pid}"
        pts = [(r["params"].get(pid), r["objective"], r["id"]) for r in ok
               if r["params"] and r["params"].get(pid) is not None]
        if not pts:
            out.append(_chart(cid, title, empty=_why_no_objective(d["trials"]) if not ok else
                              f"No completed trial set {pid} (a dependent parameter).",
                              height=300))
            continue
        numeric = p.get("type") in ("numeric", "integer") and all(_is_number(v) for v, _, _ in pts)
        text = [f"trial {i}" for _, _, i in pts]
        if numeric:
            xs = [v for v, _, _ in pts]
            data = [{"type": "scatter", "mode": "markers", "x": xs, "y": [o for _, o, _ in pts],
                     "text": text, "name": pid, "marker": {"size": 6, "color": "#2c7fb8",
                                                           "opacity": 0.8}}]
            xaxis = {"title": {"text": pid}}
            if _log_axis(xs, p):
                xaxis["type"] = "log"
        else:
            order = [str(v) for v in p.get("values", [])]
            order += sorted({str(v) for v, _, _ in pts} - set(order))
            data = [{"type": "box", "x": [str(v) for v, _, _ in pts], "y": [o for _, o, _ in pts],
                     "text": text, "name": pid, "boxpoints": "all", "jitter": 0.4,
                     "pointpos": 0, "marker": {"size": 5, "color": "#2c7fb8"},
                     "line": {"color": "#6baed6"}, "fillcolor": "rgba(0,0,0,0)"}]
            xaxis = {"title": {"text": pid}, "categoryorder": "array", "categoryarray": order}
        out.append(_chart(cid, title, data, {"xaxis": xaxis, "showlegend": False,
                                             "yaxis": {"title": {"text": "objective"}},
                                             "margin": {"l": 55, "r": 10, "t": 35, "b": 45}},
                          expect={"points": len(pts)}, height=300))
    return out


def parallel(d: dict) -> dict:
    top = d["ranked"][:BEST_PARALLEL]
    title = f"Parallel coordinates of the {BEST_PARALLEL} best trials"
    if not top:
        return _chart("parallel", title, empty=_why_no_objective(d["trials"]))
    dims = []
    for p in d["space"]:
        vals = [(r["params"] or {}).get(p["id"]) for r in top]
        if all(_is_number(v) for v in vals) and p.get("type") in ("numeric", "integer"):
            label = p["id"]
            if _log_axis(vals, p):
                vals, label = [math.log10(v) for v in vals], f"log10 {p['id']}"
            dims.append({"label": label, "values": vals})
        else:
            cats = [str(v) for v in p.get("values", [])]
            cats += sorted({str(v) for v in vals} - set(cats))
            dims.append({"label": p["id"], "values": [cats.index(str(v)) for v in vals],
                         "tickvals": list(range(len(cats))), "ticktext": cats,
                         "range": [0, max(len(cats) - 1, 1)]})
    obj = [r["objective"] for r in top]
    dims.append({"label": "objective", "values": obj})
    return _chart("parallel", title, [{
        "type": "parcoords", "dimensions": dims,
        "line": {"color": obj, "colorscale": "Viridis", "reversescale": True, "showscale": True,
                 "colorbar": {"title": {"text": "objective"}}}}],
        {"margin": {"l": 70, "r": 70, "t": 80, "b": 30}},
        expect={"lines": len(top), "dimensions": len(dims)}, height=420)


def all_charts(d: dict) -> dict:
    return {"convergence": convergence(d), "timeline": [timeline(d)],
            "curves": [learning_curves(d)], "params": params_vs_objective(d),
            "parallel": [parallel(d)]}
