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
        self.ws, self.n, self.console, self.exceptions, self.requests = ws, 0, [], [], []

    def _event(self, m: dict) -> None:
        meth, p = m.get("method"), m.get("params", {})
        if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                         for a in p.get("args", [])))
        elif meth == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.exceptions.append(d.get("exception", {}).get("description") or d.get("text"))
        elif meth == "Network.requestWillBeSent":
            self.requests.append(p.get("request", {}).get("url", ""))
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


class Browser:
    """One headless Chromium for any number of pages: ``with Browser() as b: b.open(path)``."""

    def __init__(self, width: int = 1280, timeout: float = 60.0):
        self.width, self.timeout = width, timeout

    def __enter__(self) -> "Browser":
        exe = chromium()
        if exe is None:
            raise RuntimeError("no chromium found: apt-get install -y --no-install-recommends "
                               "chromium (deps/apt.txt; `make setup` installs it)")
        self.profile = tempfile.mkdtemp(prefix="emews-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--enable-unsafe-swiftshader", "--use-angle=swiftshader",   # WebGL: parcoords
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={self.width},900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(self.profile) / "DevToolsActivePort"
            end = time.time() + 30
            while not (port_file.is_file() and port_file.read_text().strip()):
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError(f"chromium did not start (exit status {self.proc.poll()})")
                time.sleep(0.1)
            self.port = int(port_file.read_text().split()[0])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, path: str | os.PathLike, png: str | os.PathLike | None = None) -> dict:
        """Load ``path`` in a new tab and return ``{"rendered", "report", "console",
        "exceptions", "title", "requests"}``: ``report`` is what report.js wrote (``charts``: per
        chart ``expect`` and ``drawn``), ``console`` the console errors, ``exceptions`` uncaught
        ones, ``requests`` every URL the page asked for.
        With ``png``, a screenshot of the whole page is written there."""
        import urllib.request

        import websocket   # websocket-client
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank",
                                     method="PUT")
        target = json.load(urllib.request.urlopen(req, timeout=10))
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=self.timeout,
                                         suppress_origin=True)
        try:
            page = Page(ws)
            for domain in ("Runtime", "Log", "Page", "Network"):
                page.call(f"{domain}.enable")
            page.call("Page.navigate", url=Path(path).resolve().as_uri())
            end = time.time() + self.timeout
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
                page.call("Emulation.setDeviceMetricsOverride", width=self.width, height=int(h),
                          deviceScaleFactor=1, mobile=False)
                time.sleep(0.5)   # plotly's responsive charts settle after the resize
                shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                Path(png).write_bytes(base64.b64decode(shot["data"]))
            page.call("Runtime.evaluate", expression="0")   # drain events that came meanwhile
            return {"rendered": state, "report": report, "console": page.console,
                    "exceptions": page.exceptions, "title": title,
                    "requests": page.requests}
        finally:
            ws.close()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/close/{target['id']}",
                                       timeout=10).read()
            except OSError:
                pass


def open_report(path: str | os.PathLike, png: str | os.PathLike | None = None, width: int = 1280,
                timeout: float = 60.0) -> dict:
    """``Browser.open`` in a Chromium of its own."""
    with Browser(width, timeout) as b:
        return b.open(path, png)


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
