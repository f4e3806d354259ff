"""``missu models``: the models this installation finds by name, and registry models fetched ahead of use."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

from ..bundle.card import read_card
from ..bundle.registry import bundled_models, cached_path, model_dirs, remote_models, resolve_bundle
from ..errors import MISSUError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models found by name (bundles on disk, registry.json entries); "
                                      "--fetch downloads registry models now, e.g. before going offline")
    p.add_argument("--fetch", nargs="+", metavar="NAME", default=[],
                   help="download these registry models into the cache (SHA-256 checked)")
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of a table; with --fetch, one JSON event per line (download progress, "
                        "then the list as a 'models' event), as the Slicer panel reads it")
    p.set_defaults(func=run)


def fetch(name: str, json_events: bool = False) -> Path:
    """:func:`resolve_bundle` with a download shown as it goes: JSON progress events on stdout (the Slicer
    panel; at most five a second) or a tqdm bar of bytes on stderr. A bundle on disk or in the cache is
    returned silently."""
    if json_events:
        last = 0.0

        def report(done: int, total: int | None) -> None:
            nonlocal last
            if time.monotonic() - last < 0.2 and done != total:
                return
            last = time.monotonic()
            size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            print(json.dumps({"event": "progress", "fraction": round(done / total, 4) if total else 0.0,
                              "message": f"downloading {name}: {size}"}), flush=True)
        return resolve_bundle(name, report)
    from tqdm import tqdm  # not in Slicer's own Python, where the panel asks for JSON events

    with tqdm(desc=f"download {name}", unit="B", unit_scale=True, delay=0.5, disable=None, file=sys.stderr) as bar:
        def show(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return resolve_bundle(name, show)


def _describe(path) -> dict:
    try:
        card = read_card(path)
    except MISSUError as exc:  # one damaged bundle must not hide the others
        return {"error": str(exc)}
    return {"version": card.version, "description": card.description}


def models() -> list[dict]:
    """Every model name: bundles on disk first (they win over a registry entry of the same name), then the
    registry's, with where each one is or would be."""
    local = bundled_models()
    rows = [{"name": name, "source": "disk", "path": str(path), **_describe(path)} for name, path in local.items()]
    try:
        registry = remote_models()
    except MISSUError as exc:  # a damaged registry.json: named, without hiding the bundles
        return [*rows, {"name": "(registry)", "source": "registry", "error": str(exc)}]
    for name, entry in registry.items():
        if name in local:
            continue
        cached = cached_path(name, entry)
        row = {"name": name, "source": "registry", "url": entry["url"], "downloaded": cached.is_file(),
               "path": str(cached)}
        rows.append({**row, **(_describe(cached) if cached.is_file() else {"description": entry.get("description", "")})})
    return rows


def run(args: argparse.Namespace) -> int:
    registry = remote_models() if args.fetch else {}
    for name in args.fetch:
        if name not in registry:
            raise MISSUError(f"model {name!r}: in no registry.json (looked in: {', '.join(map(str, model_dirs()))})")
        where = "on disk, nothing to fetch" if name in bundled_models() else fetch(name, args.json)
        if not args.json:
            print(f"{name}: {where}")
    rows = models()
    if args.json and args.fetch:
        print(json.dumps({"event": "models", "models": rows}), flush=True)
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "on disk" if row["source"] == "disk" else ("downloaded" if row.get("downloaded") else "not downloaded")
        about = textwrap.shorten(row.get("description", ""), 70, placeholder="...")
        detail = row.get("error") or f"{row.get('version', '-'):8} {about}"
        print(f"{row['name']:24} {state:15} {detail}")
    if not rows:
        print("no models found in: " + ", ".join(map(str, model_dirs())))
    return 0
