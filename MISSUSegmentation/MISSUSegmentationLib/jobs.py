"""Long work for the panel: a subprocess whose JSON events are folded into a progress fraction and a status.

The panel's timer calls :meth:`Job.poll` and, once the process has left, :meth:`Job.finish`; both are Qt-free.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable

from .process import JsonProcess


class JobFailed(RuntimeError):
    """The sub-command ended with an error (its message is the child's one-line error)."""


class Job:
    """``cleanup`` (if given) runs once the job has finished, whatever the outcome: it removes the job's
    temporary folder, its stderr log included, after :meth:`finish` has read the log's tail."""

    def __init__(self, process: JsonProcess, cleanup: Callable[[], None] | None = None) -> None:
        self.process = process
        self._cleanup = cleanup
        self.fraction, self.status = 0.0, "starting"
        self.error: str | None = None
        self.cancelled = False
        self.started = time.perf_counter()

    @property
    def running(self) -> bool:
        return self.process.running

    def poll(self) -> list[dict]:
        events = self.process.poll()
        for event in events:
            self.update(event)
        return events

    def cancel(self) -> None:
        self.cancelled = True
        self.status = "stopping..."
        self.process.stop()

    def update(self, event: dict) -> None:
        if event["event"] == "error":
            self.error = self.status = event["message"]
        elif event["event"] == "cancelled":
            self.cancelled = True
        elif event["event"] == "progress":
            self.fraction, self.status = event["fraction"], event["message"]

    def finish(self) -> str:
        """The final status line; raises :class:`JobFailed` if the job failed (a cancel is not a failure, but
        an error while stopping is: a failed last checkpoint must not read as a clean stop)."""
        try:
            return self._finish()
        finally:
            self._remove_temporary_files()

    def abandon(self, wait_s: float = 5.0) -> None:
        """The panel goes away (module unloaded, Slicer quits): stop the job. One with temporary files (copies of
        the patient's volumes) is killed if it has not left within ``wait_s``, and its files are removed now;
        training keeps its clean stop (it writes its last checkpoint and leaves on its own)."""
        self.cancel()
        if self._cleanup is None:
            return
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._remove_temporary_files()

    def _remove_temporary_files(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        try:
            if cleanup:
                cleanup()
        except OSError as exc:  # a file still held (Windows: antivirus, a slow child): not the job's outcome
            logging.warning("MISSU: could not remove a job's temporary files: %s", exc)

    def _finish(self) -> str:
        code = self.process.wait()
        for event in self.process.poll():
            self.update(event)
        seconds = time.perf_counter() - self.started
        if self.error:
            raise JobFailed(self.error)
        if self.cancelled:
            return self.on_cancelled()
        if code != 0:  # no message of its own (killed, crashed): what it wrote to stderr, before its log goes
            tail = self.process.log_tail()
            raise JobFailed(f"missu {self.process.command[4]} stopped (exit code {code})" + (f":\n{tail}" if tail else ""))
        return f"{self.on_success()} ({seconds:.1f} s)"

    def new_curves(self) -> str | None:
        """The path of the training curves when they were redrawn since the last call, else None."""
        return None

    def on_success(self) -> str:
        return "done"

    def on_cancelled(self) -> str:
        return "Cancelled."


class SegmentationJob(Job):
    """``missu segment --json``; on success ``load`` puts the written labels into the scene and returns
    (segmentation node, mL per segment, the name of an output node left untouched because it was edited
    while the job ran, or None)."""

    def __init__(self, process: JsonProcess, load, cleanup) -> None:
        super().__init__(process, cleanup)
        self._load = load
        self.segmentation = None

    def on_success(self) -> str:
        self.segmentation, volumes, kept = self._load()
        summary = "; ".join(f"{name} {ml:.1f} mL" for name, ml in volumes.items())
        if kept:
            return f"{kept} was edited during the run and is kept; result in {self.segmentation.GetName()}: {summary}"
        return summary


class DownloadJob(Job):
    """``missu models --fetch MODEL --json``: a registry model downloaded into the cache, SHA-256 checked."""

    def __init__(self, process: JsonProcess, model: str, cleanup: Callable[[], None] | None = None) -> None:
        super().__init__(process, cleanup)
        self.model = model

    def on_success(self) -> str:
        self.fraction = 1.0  # also when the server did not say the size
        return f"{self.model} downloaded"

    def on_cancelled(self) -> str:
        return "Download cancelled; the model in use is unchanged."


class TrainingJob(Job):
    """``missu train``: progress, latest metrics, loss and Dice histories, the exported bundle."""

    def __init__(self, process: JsonProcess, run_dir: str) -> None:
        super().__init__(process)
        self.run_dir = run_dir
        self.losses: list[tuple[int, float]] = []  # (epoch, mean training loss)
        self.dice: list[tuple[int, float]] = []  # (epoch, mean validation Dice)
        self.bundle: str | None = None
        self._epochs, self._steps = 1, 1
        self._curves_stamp: int | None = None

    @property
    def curves(self) -> str:
        return os.path.join(self.run_dir, "curves.png")

    def new_curves(self) -> str | None:
        # By the file's time, not by events: the trainer redraws the curves after a validation's checkpoints.
        try:
            stamp = os.stat(self.curves).st_mtime_ns
        except OSError:
            return None
        if stamp == self._curves_stamp:
            return None
        self._curves_stamp = stamp
        return self.curves

    def update(self, event: dict) -> None:
        super().update(event)
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
        elif kind == "cancelled" and "epoch" in event:
            self.status = f"stopped at epoch {event['epoch']}; resume to continue"
        elif kind == "finished":
            self.fraction, self.bundle = 1.0, event["bundle"]
            self.status = (f"finished: best validation Dice {event['best_dice']:.3f} (epoch {event['best_epoch']}); "
                           f"model in {event['bundle']}")

    def on_success(self) -> str:
        return self.status

    def on_cancelled(self) -> str:
        return self.status if self.status.startswith("stopped") else "Stopped before the first checkpoint."
