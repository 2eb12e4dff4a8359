"""The optimizer child process: start it, echo its log, notice its death, stop it.

``python -m emews_py.optimizer ENDPOINT ALGO_FILE`` runs in the run directory with its output in
``optimizer.log``; the driver shows that file on the terminal as ``[optimizer] ...`` lines. A
process that dies without saying anything (SIGSEGV from R, SIGKILL) is described with the signal's
name and the tail of its log.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from emews_py.farm.procs import die_with_parent_of

RPY2_PREFIX = "R[write to console]: "


class Supervisor:
    def __init__(self, endpoint: str, algo_file: str, run_dir: str | Path):
        self.endpoint, self.algo_file = endpoint, algo_file
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / "optimizer.log"
        self.proc: subprocess.Popen | None = None
        self._log_pos = 0
        self._after_noise = False

    def start(self) -> int:
        """Start the optimizer; raises OSError if the interpreter cannot start."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Dies with rank 0, and in a session of its own: a Ctrl-C to the terminal's process group
        # would interrupt R inside rpy2 (which installs its own SIGINT handler) with a traceback;
        # the driver stops it instead (abort message, then kill).
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emews_py.optimizer", self.endpoint, self.algo_file],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.run_dir,
                env=env, preexec_fn=die_with_parent_of(new_session=True))
        return self.proc.pid

    def echo_log(self) -> None:
        """Show complete new lines of optimizer.log on the terminal."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_pos)
                chunk = f.read()
        except OSError:
            return
        if not chunk:
            return
        cut = chunk.rfind(b"\n") + 1
        if cut == 0 and len(chunk) < 65536:
            return  # wait for the rest of the line
        cut = cut or len(chunk)
        self._log_pos += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            # rpy2's logging of R's console (an optimizer that embeds R on its own; ours writes
            # R's output as-is, rbridge._Lines): drop its prefix and the blank line after it.
            noise, self._after_noise = self._after_noise, line.startswith(RPY2_PREFIX)
            if self._after_noise:
                line = line[len(RPY2_PREFIX):]
            elif noise and not line.strip():
                continue
            sys.stdout.write(f"[optimizer] {line}\n" if line else "[optimizer]\n")
        sys.stdout.flush()

    def tail(self, n: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def exit_code(self) -> int | None:
        """None while it runs."""
        return None if self.proc is None else self.proc.poll()

    def death_report(self, rc: int) -> str:
        """Why the experiment ends when the optimizer exited with ``rc`` before finishing."""
        how = (f"was killed by signal {signal.Signals(-rc).name}" if rc < 0
               else f"exited with status {rc}")
        return (f"the optimizer process ({self.algo_file}) {how} before finishing the experiment. "
                f"Last output (full log in {self.log_path}):\n{self.tail()}")

    def stop(self, grace_s: float = 3.0) -> None:
        """Let it exit on its own for ``grace_s`` (it was told to), then kill it."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.echo_log()
