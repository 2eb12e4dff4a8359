"""Open a report in headless Chromium over the DevTools protocol: wait until its charts are drawn,
collect console errors and uncaught exceptions, and optionally save a screenshot. Used by the
tests and to make the screenshot in docs/; needs Debian's ``chromium`` (deps/apt.txt) and the
``websocket-client`` package. Nothing is downloaded.

    python -m emews_py.report.browser report.html [--png out.png] [--width 1280]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def chromium() -> str | None:
    return next((p for p in (os.environ.get("EMEWS_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)


class Page:
    def __init__(self, ws):
        self.ws, self.n, self.console, self.exceptions = ws, 0, [], []

    def _event(self, m: dict) -> None:
        meth, p = m.get("method"), m.get("params", {})
        if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                         for a in p.get("args", [])))
        elif meth == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.exceptions.append(d.get("exception", {}).get("description") or d.get("text"))
        elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.console.append(p["entry"].get("text", ""))

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._event(m)

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")


def open_report(path: str | os.PathLike, png: str | os.PathLike | None = None, width: int = 1280,
                timeout: float = 60.0) -> dict:
    """Load ``path`` in headless Chromium and return ``{"rendered", "report", "console",
    "exceptions", "title"}``: ``report`` is what report.js wrote (``charts``: per chart
    ``expect`` and ``drawn``), ``console`` the console errors, ``exceptions`` uncaught ones.
    With ``png``, a screenshot of the whole page is written there."""
    import websocket   # websocket-client

    exe = chromium()
    if exe is None:
        raise RuntimeError("no chromium found: apt-get install -y --no-install-recommends chromium")
    profile = tempfile.mkdtemp(prefix="emews-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--remote-debugging-port=0", f"--user-data-dir={profile}",
         f"--window-size={width},900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        end = time.time() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > end or proc.poll() is not None:
                raise RuntimeError(f"chromium did not start (exit status {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import urllib.request
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        ws = websocket.create_connection(page_ws, timeout=timeout, suppress_origin=True)
        page = Page(ws)
        for domain in ("Runtime", "Log", "Page"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=Path(path).resolve().as_uri())
        end = time.time() + timeout
        state = None
        while time.time() < end:
            state = page.eval("document.body && document.body.getAttribute('data-rendered')")
            if state in ("yes", "failed"):
                break
            time.sleep(0.2)
        report = page.eval("window.__report || null")
        title = page.eval("document.title")
        if png:
            h = page.eval("Math.ceil(document.documentElement.scrollHeight)") or 900
            page.call("Emulation.setDeviceMetricsOverride", width=width, height=int(h),
                      deviceScaleFactor=1, mobile=False)
            time.sleep(0.5)   # plotly's responsive charts settle after the resize
            shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(png).write_bytes(base64.b64decode(shot["data"]))
        page.call("Runtime.evaluate", expression="0")   # drain events that came meanwhile
        ws.close()
        return {"rendered": state, "report": report, "console": page.console,
                "exceptions": page.exceptions, "title": title}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emews_py.report.browser", description=__doc__)
    ap.add_argument("html")
    ap.add_argument("--png")
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args(argv)
    r = open_report(a.html, a.png, a.width)
    print(json.dumps(r, indent=1))
    return 0 if r["rendered"] == "yes" and not r["console"] and not r["exceptions"] else 1


if __name__ == "__main__":
    sys.exit(main())
