"""Atomic writes: a file appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import MISSUError


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless asked to."""
    if path.exists() and not overwrite:
        raise MISSUError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format) that is
    renamed onto ``path`` when the block succeeds and deleted when it raises."""
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".partial-{secrets.token_hex(4)}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
