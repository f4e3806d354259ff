"""Running ``missu`` sub-commands as subprocesses whose stdout is one JSON event per line.

Qt-free, so the panel polls it from a QTimer and tests drive it directly. Works the same on Linux, macOS and
Windows: the child is started with ``--stdin-control`` and stops cleanly (training saves a checkpoint) when
told so on its stdin; if it has not left after a grace period, the whole process tree is killed (Slicer's
``PythonSlicer`` is a launcher, so killing only the direct child would leave the worker running). No console
window opens on Windows.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# The folder that holds ``missu`` and ``MISSUSegmentationLib``: the child must import the same core however
# Slicer found this module (an installed extension or "Additional module paths", which only extend Slicer's
# own in-process sys.path).
MODULE_DIR = Path(__file__).resolve().parents[1]
WINDOWS = sys.platform == "win32"


def python_executable() -> str:
    """Slicer's ``PythonSlicer`` (sets up Slicer's environment) when there is one, else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def missu_command(*arguments: str, python: str | None = None) -> list[str]:
    """``python -m missu --stdin-control ARGS``."""
    return [python or python_executable(), "-m", "missu", "--stdin-control", *map(str, arguments)]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def popen_options() -> dict:
    """A process group of its own (so the tree can be stopped) and, on Windows, no console window."""
    if WINDOWS:
        startupinfo = subprocess.STARTUPINFO()
        startupinfo.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        startupinfo.wShowWindow = subprocess.SW_HIDE
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW,
                "startupinfo": startupinfo}
    return {"start_new_session": True}


def kill_tree_command(pid: int) -> list[str]:
    return ["taskkill", "/F", "/T", "/PID", str(pid)]


def parse_event(line: str) -> dict | None:
    """One stdout line as an event; anything else (a stray print) as a ``log`` event, blank lines dropped."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "log", "message": line}
    return event if isinstance(event, dict) and "event" in event else {"event": "log", "message": line}


class JsonProcess:
    """A running sub-command; :meth:`poll` returns the events that arrived since the last call."""

    def __init__(self, command: Sequence[str], log_path: Path | None = None, env: dict | None = None,
                 grace_s: float = 30.0):
        self.command = list(command)
        self.grace_s = grace_s
        self.stop_requested_at: float | None = None
        self._events: queue.Queue = queue.Queue()
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env=child_environment(env), **popen_options(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Bytes, decoded leniently: a stray undecodable byte must not kill the reader (the child would then
        # block on a full pipe).
        for raw in iter(self.process.stdout.readline, b""):
            if (event := parse_event(raw.decode("utf-8", errors="replace"))) is not None:
                self._events.put(event)

    def poll(self) -> list[dict]:
        """New events; also kills the process tree once a requested stop has outlasted the grace period."""
        if self.stop_requested_at is not None and self.running and time.monotonic() - self.stop_requested_at > self.grace_s:
            self.kill()
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Ask the process to stop cleanly (training checkpoints first); :meth:`poll` kills it after ``grace_s``."""
        if self.stop_requested_at is not None:  # asked already (a second click on Cancel): stdin is closed
            return
        self.stop_requested_at = time.monotonic()
        if self.running:
            try:
                self.process.stdin.write(b"stop\n")
                self.process.stdin.close()
            except OSError:  # it is already leaving
                pass

    def kill(self) -> None:
        """Kill the whole process tree now."""
        if not self.running:
            return
        if WINDOWS:
            subprocess.run(kill_tree_command(self.process.pid), capture_output=True, **popen_options())
        else:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of the child's stderr log (a traceback, a crash message), or "" without a log."""
        try:
            text = Path(self.log_path).read_bytes().decode("utf-8", errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        return code
