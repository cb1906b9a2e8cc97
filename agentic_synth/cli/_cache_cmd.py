"""``synth cache stats|clear|export PATH``: look into a persistent response cache."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from ..caching import CachedResult
from ..caching._sqlite import SQLiteTier
from ._common import run_async

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cache",
        help="look into or clear a response cache file",
        description="Inspect, export or clear the SQLite response cache that "
        "`synth generate --cache PATH` writes (and resumes from).",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="entries, bytes and file sizes")
    stats.add_argument("path", metavar="PATH", help="the cache file")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    clear = actions.add_parser("clear", help="drop every entry (the file stays)")
    clear.add_argument("path", metavar="PATH", help="the cache file")
    export = actions.add_parser("export", help="write every entry as a JSON line")
    export.add_argument("path", metavar="PATH", help="the cache file")
    export.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="JSONL file ('-': stdout)"
    )
    p.set_defaults(run=run)


def _existing(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(
            f"{path} is not a cache file; pass the PATH given to synth generate --cache"
        )
    return file


def run(args: argparse.Namespace) -> int:
    path = _existing(args.path)
    if args.action == "stats":
        figures = _stats(path)
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print(
                f"{path}: {figures['entries']:,} entries, {figures['bytes']:,} bytes of answers; "
                f"file {figures['file_bytes']:,} bytes, write-ahead log {figures['wal_bytes']:,}"
            )
        return 0
    if args.action == "clear":
        dropped = run_async(_clear, path)
        print(f"{path}: dropped {dropped:,} entries", file=sys.stderr)
        return 0
    return _export(path, args.output)


async def _tier_stats(path: Path) -> tuple[int, int]:
    tier = SQLiteTier(path)
    try:
        stats = tier.stats()
    finally:
        await tier.aclose()
    return stats.entries, stats.bytes


def _stats(path: Path) -> dict[str, Any]:
    entries, size = run_async(_tier_stats, path)
    wal = path.with_name(path.name + "-wal")
    return {
        "entries": entries,
        "bytes": size,
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }


async def _clear(path: Path) -> int:
    tier = SQLiteTier(path)
    try:
        return await tier.clear()
    finally:
        await tier.aclose()


def _export(path: Path, output: str) -> int:
    tier = SQLiteTier(path)
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
    count = 0
    try:
        for key, raw in tier.items():
            entry = CachedResult.from_bytes(raw)
            row = {
                "key": key,
                "stored_at": entry.stored_at,
                "model": entry.model,
                "text": entry.text,
                "finish_reason": entry.finish_reason,
                "input_tokens": entry.usage.input_tokens,
                "output_tokens": entry.usage.output_tokens,
                "request_id": entry.request_id,
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out is not sys.stdout:
            out.close()
        tier.close()
    print(f"{path}: exported {count:,} entries", file=sys.stderr)
    return 0
