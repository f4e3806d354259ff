"""Safe outputs: paths checked before any work is done, files that appear whole under their final name or
not at all, and no temporary file left behind by an interrupted write."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import MISSUError

OUTPUT_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # single-file formats SimpleITK writes
SEGMENTATION_SUFFIXES = (".seg.nrrd", ".dcm")  # Slicer segmentation, DICOM SEG
PARTIAL = re.compile(r"^\.partial-(?P<host>[^-]+)-(?P<pid>\d+)-[0-9a-f]{8}-")
HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless asked to."""
    if path.is_dir():
        raise MISSUError(f"{path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise MISSUError(f"{path}: already exists; pass --overwrite to replace it")


def _writable_folder(path: Path) -> None:
    folder = path.parent
    while not folder.exists():  # the nearest existing ancestor decides whether the folders can be made
        folder = folder.parent
    if not folder.is_dir():
        raise MISSUError(f"{path}: cannot be written ({folder} is a file, not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MISSUError(f"{path}: cannot be written (no write permission in {folder})")


def check_outputs(outputs: dict[str, Path | None], inputs: Sequence[str | os.PathLike], overwrite: bool) -> None:
    """Validate every output before inference: a known extension, distinct from each other and from every
    input, a writable folder, and no existing file replaced without ``overwrite``."""
    seen: dict[Path, str] = {Path(p).resolve(): "an input" for p in inputs}
    for role, path in outputs.items():
        if path is None:
            continue
        suffixes = SEGMENTATION_SUFFIXES if role == "segmentation" else OUTPUT_IMAGE_SUFFIXES
        if not path.name.lower().endswith(suffixes):
            raise MISSUError(f"{path}: the {role} output must end in {' or '.join(suffixes)}")
        resolved = path.resolve()
        if resolved in seen:
            raise MISSUError(f"{path}: the {role} output is also {seen[resolved]}; give it its own path")
        seen[resolved] = f"the {role} output"
        check_writable(path, overwrite)
        _writable_folder(path)


def _remove_stale_partials(folder: Path) -> None:
    """Temporary files of writers on this machine that were killed (SIGKILL, power loss): their process no
    longer exists. Files of other machines (a shared folder) are left alone."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = PARTIAL.match(entry.name)
        if match and match["host"] == HOST and not _alive(int(match["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: leave its file alone
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format) that is
    renamed onto ``path`` when the block succeeds and deleted when it raises or is interrupted (Ctrl-C, and
    SIGTERM, which the command line turns into the same interruption). A writer killed outright leaves its
    temporary file, named with its machine and process id; the next write into that folder on the same
    machine removes it."""
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path.parent)
    temporary = _partial(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _partial(path: Path) -> Path:
    """A temporary name beside ``path`` that :func:`_remove_stale_partials` recognises."""
    return path.with_name(f".partial-{HOST}-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """:func:`atomic_path` for a folder (a model bundle): filled under a temporary name, then swapped in whole."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MISSUError(f"{path}: is a file; give a folder name")
    if path.exists() and not overwrite:
        raise MISSUError(f"{path}: already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path.parent)
    temporary = _partial(path)
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            old = _partial(path)
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], overwrite: bool = False) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together (a segmentation and its label and uncertainty maps):
    none is renamed onto its final name before all were written, so an interruption leaves the old set whole."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path, overwrite)) for path in paths]
