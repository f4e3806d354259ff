"""``missu`` command line: one sub-module per sub-command, each with ``register(subparsers)``."""

from __future__ import annotations

import _thread
import argparse
import json
import os
import signal
import sys
import threading
import traceback

from .. import __version__
from ..errors import MISSUError
from . import dataset, evaluate, export, info, models, segment, startup, train

COMMANDS = (segment, evaluate, train, export, dataset, models, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="missu", description="MISSU 3D medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"missu {__version__}")
    parser.add_argument("--stdin-control", action="store_true",
                        help="stop cleanly (as on Ctrl-C) when stdin reads 'stop' or closes: how the Slicer panel "
                             "cancels on every platform")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _start_stdin_control() -> None:
    """Watch stdin for a stop. The parent asks for Ctrl-C semantics, but a SIGINT ignored by whatever started it
    (a background job of a non-interactive shell; exec keeps it ignored) would turn the stop into a no-op: from the
    main thread, Python's own handler is put back first."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=_watch_stdin, daemon=True).start()


def _watch_stdin() -> None:
    """Interrupt the main thread (as Ctrl-C does: training checkpoints, segmentation stops) on 'stop' or EOF."""
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    _interrupt_main()


def _interrupt_main() -> None:
    """Ctrl-C for the main thread. Where it would raise KeyboardInterrupt (Python's own handler) and POSIX threads
    are, a real SIGINT sent to it, which also breaks a blocking read (a download from a stalled server);
    otherwise (Windows, training's handler that stops at the next step) the interpreter's simulated one, which
    takes effect at its next Python step."""
    if hasattr(signal, "pthread_kill") and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:
        _thread.interrupt_main()


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # so that partial outputs are removed on the way out (training has its own handler)


def program() -> int:
    """``missu`` as a program of its own (the console script and ``python -m missu``); :func:`main` is the same
    for callers inside another process (the Slicer module's batch, tests)."""
    startup.own_process = True
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main_thread else None
    try:
        code = _run(args)
    except Exception:
        if not args.stdin_control:
            raise
        traceback.print_exc()  # and leave, as below
        code = 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if args.stdin_control:
        # The stdin watcher stays blocked in a read, and with OpenVINO's runtime loaded the interpreter's shutdown
        # then never ends. Everything is written and closed by now (outputs are atomic): leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        if args.stdin_control:  # inside the try: a stop may come at once
            _start_stdin_control()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"missu {args.command}: cancelled", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"event": "cancelled"}), flush=True)
        return 130
    except (MISSUError, OSError) as exc:
        if os.environ.get("MISSU_DEBUG"):
            raise
        print(f"missu {args.command}: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        return 1
    except Exception as exc:  # a bug: the traceback goes to stderr as usual, and a JSON reader gets the message
        if getattr(args, "json", False):
            print(json.dumps({"event": "error", "message": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc()}), flush=True)
        raise
