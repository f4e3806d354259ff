"""Subprocess control used by the panel: clean stop over stdin, killing the whole tree, finding ``missu``
however the module was loaded, surviving undecodable output, no console window on Windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import MODULE_DIR

sys.path.insert(0, str(MODULE_DIR))
from MISSUSegmentationLib import process as proc  # noqa: E402
from MISSUSegmentationLib.jobs import Job  # noqa: E402


def _wait_for_event(job_or_process, kind: str, timeout: float = 60) -> list[dict]:
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        seen += job_or_process.poll()
        if any(e["event"] == kind for e in seen):
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"no {kind} event; got {seen}")


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_stop_over_stdin_interrupts_the_child_cleanly(sigint):
    """The same path on every platform: the CLI's --stdin-control turns 'stop' into Ctrl-C semantics, also in a
    child that inherits an ignored SIGINT (Slicer or a script started in the background of a non-interactive shell)."""
    script = ("import json, sys, time\nfrom missu.cli import _start_stdin_control\n"
              "_start_stdin_control()\n"
              "print(json.dumps({'event': 'start'}), flush=True)\n"
              "try:\n    for _ in range(600):\n        time.sleep(0.1)  # work in steps, as inference windows and training steps are\n"
              "except KeyboardInterrupt:\n"
              "    print(json.dumps({'event': 'cancelled'}), flush=True)\n")
    if sigint == "ignored":
        script = f"import signal, os, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" \
                 f"os.execv(sys.executable, [sys.executable, '-c', {script!r}])\n"
    job = Job(proc.JsonProcess([sys.executable, "-c", script]))
    _wait_for_event(job.process, "start")
    started = time.monotonic()
    job.cancel()
    assert job.process.wait(timeout=30) == 0 and time.monotonic() - started < 10
    assert job.finish() == "Cancelled."  # shown as a cancel, not as a failure


def test_cancel_twice_while_the_child_is_still_stopping():
    """A second click on Cancel (or module cleanup after a Stop) while training still writes its checkpoint."""
    script = ("import json, sys, time\nprint(json.dumps({'event': 'start'}), flush=True)\n"
              "sys.stdin.readline()\ntime.sleep(2)  # the last checkpoint\n"
              "print(json.dumps({'event': 'cancelled'}), flush=True)\n")
    job = Job(proc.JsonProcess([sys.executable, "-c", script]))
    _wait_for_event(job.process, "start")
    job.cancel()
    time.sleep(0.5)
    assert job.running
    job.cancel()  # stdin is closed by now: nothing to write, no error
    assert job.process.wait(timeout=30) == 0 and job.finish() == "Cancelled."


def test_missu_cancel_over_stdin_exits_130_with_a_cancelled_event(tmp_path, make_bundle, phantom):
    path, _ = phantom()
    process = proc.JsonProcess(proc.missu_command(
        "segment", "--model", str(make_bundle()), "--input", str(path), "--output", str(tmp_path / "o.seg.nrrd"),
        "--json", "--device", "cpu"))
    process.stop()  # at once: whatever it was doing, it leaves cleanly
    assert process.wait(timeout=120) in (0, 130)
    events = process.poll()
    assert not (tmp_path / "o.seg.nrrd").exists() or any(e["event"] == "case" for e in events)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".partial")] == []


def test_an_unexpected_error_in_the_child_reaches_the_panel_as_its_message():
    """A bug (not a MISSUError) in a --json sub-command: its message is the job's error, the traceback goes to
    the log, and the child leaves at once (under --stdin-control it must not wait on its stdin watcher)."""
    from MISSUSegmentationLib.jobs import JobFailed

    script = ("import sys\nfrom missu import cli\nfrom missu.cli import segment\n"
              "def bug(args):\n    raise RuntimeError('a bug')\n"
              "segment.run = bug\nsys.exit(cli.program())\n")
    job = Job(proc.JsonProcess([sys.executable, "-c", script, "--stdin-control", "segment", "--input", "x.nii.gz",
                                "--output", "x.seg.nrrd", "--json"]))
    assert job.process.wait(timeout=60) == 1
    with pytest.raises(JobFailed, match="^RuntimeError: a bug$"):
        job.finish()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups; Windows uses taskkill /T (tested below)")
def test_kill_takes_the_whole_tree_after_the_grace_period(tmp_path):
    """A launcher whose worker ignores the stop request (as PythonSlicer -> python): both must go."""
    pid_file = tmp_path / "worker.pid"
    worker = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    launcher = (f"import json, subprocess, sys, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                f"w = subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
                f"print(json.dumps({{'event': 'start'}}), flush=True)\nw.wait()\n")
    process = proc.JsonProcess([sys.executable, "-c", launcher], grace_s=0.5)
    _wait_for_event(process, "start")
    while not pid_file.exists():
        time.sleep(0.05)
    worker_pid = int(pid_file.read_text())
    process.stop()
    time.sleep(0.6)
    process.poll()  # past the grace period: kills the tree
    assert process.wait(timeout=10) != 0
    for _ in range(100):
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the worker survived its launcher")


def test_windows_options_hide_the_console_and_kill_the_tree(monkeypatch):
    if sys.platform != "win32":
        for name, value in {"STARTUPINFO": type("STARTUPINFO", (), {"dwFlags": 0, "wShowWindow": 0}),
                            "STARTF_USESHOWWINDOW": 1, "SW_HIDE": 0, "CREATE_NEW_PROCESS_GROUP": 0x200,
                            "CREATE_NO_WINDOW": 0x08000000}.items():
            monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(proc, "WINDOWS", True)
    options = proc.popen_options()
    assert options["creationflags"] & subprocess.CREATE_NO_WINDOW and "start_new_session" not in options
    assert options["startupinfo"].wShowWindow == subprocess.SW_HIDE
    assert proc.kill_tree_command(1234) == ["taskkill", "/F", "/T", "/PID", "1234"]


def test_child_finds_missu_from_the_module_folder_without_an_install(tmp_path):
    """As from Slicer's "Additional module paths": no site-packages, cwd elsewhere."""
    env = proc.child_environment({"PATH": os.environ.get("PATH", "")})
    found = subprocess.run([sys.executable, "-S", "-c", "import missu, sys; print(missu.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert found == str(MODULE_DIR / "missu" / "__init__.py")


def test_reader_survives_undecodable_bytes_and_a_full_pipe():
    script = ("import sys, json\nsys.stdout.buffer.write(b'\\xff\\xfe garbage\\n' + b'x' * 200000 + b'\\n')\n"
              "print(json.dumps({'event': 'done'}), flush=True)\n")
    process = proc.JsonProcess([sys.executable, "-c", script])
    assert process.wait(timeout=30) == 0
    events = process.poll()
    assert events[0]["event"] == "log" and "garbage" in events[0]["message"]
    assert events[-1] == {"event": "done"}


def test_parse_event_keeps_stray_prints_as_logs():
    assert proc.parse_event(json.dumps({"event": "x", "a": 1})) == {"event": "x", "a": 1}
    assert proc.parse_event("hello") == {"event": "log", "message": "hello"}
    assert proc.parse_event("  ") is None


def test_an_error_while_stopping_is_a_failure_not_a_clean_stop():
    """Stop asked, then the last checkpoint fails (say, a full disk): the user must not read 'stopped'."""
    from MISSUSegmentationLib.jobs import JobFailed, TrainingJob

    script = ("import json, sys\nsys.stdin.readline()\n"
              "print(json.dumps({'event': 'error', 'message': 'last.pt: No space left on device'}), flush=True)\n"
              "sys.exit(1)\n")
    job = TrainingJob(proc.JsonProcess([sys.executable, "-c", script]), run_dir="unused")
    job.cancel()
    with pytest.raises(JobFailed, match="No space left"):
        job.finish()


def test_a_crash_without_a_message_shows_the_end_of_its_log(tmp_path):
    """Killed or crashed (no JSON error): the stderr tail is in the error, as the log goes with the temp folder."""
    from MISSUSegmentationLib.jobs import JobFailed

    script = "import sys\nprint('Traceback: the real cause', file=sys.stderr)\nsys.exit(3)\n"
    job = Job(proc.JsonProcess([sys.executable, "-c", script, "--stdin-control", "segment"],
                               log_path=tmp_path / "segment.log"))
    with pytest.raises(JobFailed, match=r"(?s)segment stopped \(exit code 3\):\n.*Traceback: the real cause"):
        job.finish()
