"""Finding bundles: by path, by name in the model folders, or by name from ``registry.json`` (download,
SHA-256 verified, cached).

Model folders, searched in order: each entry of ``$MISSU_MODELS`` (``os.pathsep``-separated), the user
folder ``~/.missu/models``, and the extension's ``MISSUSegmentation/Resources/Models``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..data.atomic import atomic_path
from ..errors import MISSUError
from .card import CARD_FILE

BUNDLED_MODELS = Path(__file__).resolve().parents[2] / "Resources" / "Models"
REGISTRY_FILE = "registry.json"

Progress = Callable[[int, "int | None"], None]
"""Called as a download goes: (bytes so far, total bytes, None when the server does not say)."""


def model_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("MISSU_MODELS", "").split(os.pathsep) if p]
    return [*extra, Path.home() / ".missu" / "models", BUNDLED_MODELS]


def cache_dir() -> Path:
    return Path(os.environ.get("MISSU_CACHE") or Path.home() / ".cache" / "missu")


def bundled_models() -> dict[str, Path]:
    """Bundles on disk by folder name; earlier model folders win."""
    found: dict[str, Path] = {}
    for folder in model_dirs():
        if folder.is_dir():
            for sub in sorted(folder.iterdir()):
                if (sub / CARD_FILE).is_file():
                    found.setdefault(sub.name, sub)
    return found


def _registry_entries(registry: Path) -> dict[str, dict]:
    """The checked entries of one ``registry.json``."""
    try:
        models = json.loads(registry.read_text(encoding="utf-8")).get("models", {})
    except (ValueError, AttributeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise MISSUError(f"{registry}: not a model registry ({exc})") from None
    if not isinstance(models, dict):
        raise MISSUError(f"{registry}: 'models' must map names to {{'url': ..., 'sha256': ...}}")
    for name, entry in models.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("url"), str)
                and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", "")))):
            raise MISSUError(f"{registry}: model {name!r} needs a 'url' and a 'sha256' (64 hex digits)")
        if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
            raise MISSUError(f"{registry}: model name {name!r}: use letters, digits, '.', '_' and '-'")
        if not entry["url"].startswith(("https://", "http://", "file://")):
            raise MISSUError(f"{registry}: model {name!r}: 'url' must be an https://, http:// or file:// address")
    return models


def remote_models() -> dict[str, dict]:
    """Entries of every ``registry.json``: ``{"name": {"url": ..., "sha256": ..., "description": ...}}``."""
    entries: dict[str, dict] = {}
    for folder in model_dirs():
        registry = folder / REGISTRY_FILE
        if registry.is_file():
            for name, entry in _registry_entries(registry).items():
                entries.setdefault(name, entry)
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(name: str, entry: dict) -> Path:
    """Where a registry model is (or will be) cached, by name and checksum: a new release is a new file."""
    return cache_dir() / "models" / f"{name}-{entry['sha256'][:12]}.zip"


def pending_download(name: str) -> str | None:
    """The address a registry model is still to be downloaded from (not cached, or damaged in the cache); None
    when it is on this computer (or in no readable registry: :func:`resolve_bundle` then says what is wrong)."""
    if Path(name).exists() or name in bundled_models():
        return None
    try:
        entry = remote_models().get(name)
    except MISSUError:
        return None
    return entry["url"] if entry and not _whole(cached_path(name, entry), entry) else None


def _whole(cached: Path, entry: dict) -> bool:
    """Whether a registry model's cached file is there and is the registry's (its SHA-256 matches)."""
    return cached.is_file() and _sha256(cached) == entry["sha256"]


def _length(header: str | None) -> int | None:
    """A Content-Length header's byte count; None when missing or not a positive number (as http.client reads it)."""
    try:
        return int(header) if header and int(header) > 0 else None
    except ValueError:
        return None


def _download(name: str, entry: dict, progress: Progress | None = None) -> Path:
    target = cached_path(name, entry)
    if _whole(target, entry):
        return target
    if target.is_file():
        target.unlink()  # damaged in the cache: fetch it again
    digest = hashlib.sha256()
    try:  # into a temporary file of this process (another may download the same model), renamed when verified
        with atomic_path(target, overwrite=True) as partial:
            with urllib.request.urlopen(entry["url"], timeout=60) as response, open(partial, "wb") as out:
                total, done = _length(response.headers.get("Content-Length")), 0
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            if digest.hexdigest() != entry["sha256"]:
                raise MISSUError(
                    f"model {name}: download from {entry['url']} has SHA-256 {digest.hexdigest()[:12]}..., "
                    f"registry says {entry['sha256'][:12]}...; refused"
                )
    except MISSUError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise MISSUError(f"model {name}: cannot download {entry['url']} ({type(exc).__name__}: {exc})") from None
    return target


def resolve_bundle(name_or_path: str | os.PathLike, progress: Progress | None = None) -> Path:
    """A bundle path for a path, a bundled name or a registry name (downloaded once, then cached; ``progress``
    hears how the download goes)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name in (local := bundled_models()):
        return local[name]
    if name in (remote := remote_models()):
        return _download(name, remote[name], progress)
    known = sorted({*local, *remote})
    raise MISSUError(f"model {name!r}: not a bundle path nor a known model (known: {', '.join(known) or 'none'})")
