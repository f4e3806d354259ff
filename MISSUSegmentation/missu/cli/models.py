"""``missu models``: the models this installation finds by name, and registry models fetched ahead of use."""

from __future__ import annotations

import argparse
import json
import textwrap

from ..bundle.card import read_card
from ..bundle.registry import bundled_models, cached_path, model_dirs, remote_models, resolve_bundle
from ..errors import MISSUError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models found by name (bundles on disk, registry.json entries); "
                                      "--fetch downloads registry models now, e.g. before going offline")
    p.add_argument("--fetch", nargs="+", metavar="NAME", default=[],
                   help="download these registry models into the cache (SHA-256 checked)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


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
        print(f"{name}: {resolve_bundle(name) if name not in bundled_models() else 'on disk, nothing to fetch'}")
    rows = models()
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
