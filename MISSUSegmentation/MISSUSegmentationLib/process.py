"""Running ``missu`` sub-commands as subprocesses whose stdout is one JSON event per line.

Qt-free, so the panel polls it from a QTimer and tests drive it directly. Stopping sends SIGTERM to the
whole process group (the trainer checkpoints and exits; torchrun's workers stop too).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path


def missu_command(*arguments: str, python: str | None = None) -> list[str]:
    """``python -m missu ARGS`` with Slicer's (or this) Python."""
    return [python or sys.executable, "-m", "missu", *map(str, arguments)]


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

    def __init__(self, command: Sequence[str], log_path: Path | None = None, env: dict | None = None):
        self.command = list(command)
        self._events: queue.Queue = queue.Queue()
        self._log = open(log_path, "a") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if (event := parse_event(line)) is not None:
                self._events.put(event)

    def poll(self) -> list[dict]:
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
        """Ask the whole process tree to stop (SIGTERM): training saves a checkpoint first."""
        if self.running:
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return code


class TrainingMonitor:
    """Folds training events into what the panel shows: progress, latest metrics, curves, the result."""

    def __init__(self) -> None:
        self.fraction = 0.0
        self.status = "starting"
        self.losses: list[tuple[int, float]] = []  # (epoch, mean training loss)
        self.dice: list[tuple[int, float]] = []  # (epoch, mean validation Dice)
        self.bundle: str | None = None
        self.error: str | None = None
        self._epochs = 1
        self._steps = 1
        self._start_epoch = 0

    def update(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            self._epochs, self._steps = event["epochs"], max(event["steps_per_epoch"], 1)
            self.status = f"training on {event['train_cases']} cases ({event['val_cases']} for validation)"
        elif kind == "iteration":
            done = (event["epoch"] - 1) * self._steps + event["step"]
            self.fraction = min(done / (self._epochs * self._steps), 1.0)
            self.status = f"epoch {event['epoch']}/{self._epochs}, loss {event['loss']:.3f}, {event['eta_s'] / 60:.0f} min left"
        elif kind == "epoch":
            self.losses.append((event["epoch"], event["loss"]))
        elif kind == "validation":
            self.dice.append((event["epoch"], event["mean_dice"]))
            self.status = f"epoch {event['epoch']}: validation Dice {event['mean_dice']:.3f}"
        elif kind == "cancelled":
            self.status = f"stopped at epoch {event['epoch']}; resume to continue"
        elif kind == "finished":
            self.fraction, self.bundle = 1.0, event["bundle"]
            self.status = f"finished: best validation Dice {event['best_dice']:.3f} (epoch {event['best_epoch']})"
        elif kind == "error":
            self.error = event["message"]
            self.status = f"error: {event['message']}"

    def done(self, process: JsonProcess) -> str:
        """The final status line; a failed run raises with its error message."""
        code = process.process.returncode
        if code != 0 and not self.status.startswith("stopped"):
            raise RuntimeError(self.error or f"training stopped (exit code {code})")
        return self.status
