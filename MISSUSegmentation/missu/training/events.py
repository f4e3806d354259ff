"""The progress protocol: one JSON object per line on stdout; prose goes to stderr and ``train.log``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

EVENTS = ("start", "iteration", "epoch", "validation", "checkpoint", "cancelled", "finished", "error")


class EventStream:
    """Writes events (rank 0 only) and sets up the human-readable log."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.log = logging.getLogger("missu.train")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        if enabled and not self.log.handlers:
            formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
            for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / "train.log")):
                handler.setFormatter(formatter)
                self.log.addHandler(handler)

    def emit(self, event: str, **fields: Any) -> None:
        assert event in EVENTS, event
        if self.enabled:
            print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}), flush=True)
