"""Schema evolution check: today's ``.avsc`` files must read data written with the baseline's.

Backward compatibility is Avro's reader/writer rule (``avro.compatibility``):
the current schema, as reader, must resolve every baseline schema, as writer.
One loopwise rule is added: a field's default may not be removed, because
payloads older than the baseline may lack the field (optional fields are
added with defaults precisely so that old payloads stay valid).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.catalog import AVRO_DIR, BASELINE_DIR


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason why a schema cannot read its baseline's data."""

    schema: str
    kind: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.location}: {self.message}"


def _removed_defaults(schema: str, current: Any, baseline: Any, path: str) -> list[Incompatibility]:
    """Fields that had a default in the baseline and have none now, at any depth."""
    if not (isinstance(current, dict) and isinstance(baseline, dict)):
        return []
    if current.get("type") != "record" or baseline.get("type") != "record":
        return _removed_defaults(schema, current.get("type"), baseline.get("type"), path)
    found = []
    now = {f["name"]: f for f in current["fields"]}
    for old in baseline["fields"]:
        new = now.get(old["name"])
        if new is None:
            continue
        where = f"{path}.{old['name']}" if path else old["name"]
        if "default" in old and "default" not in new:
            found.append(Incompatibility(schema, "default_removed", where, "the field's default was removed"))
        found += _removed_defaults(schema, new.get("type"), old.get("type"), where)
    return found


def check_schema(name: str, current_text: str, baseline_text: str) -> list[Incompatibility]:
    """Why ``current_text`` cannot read data written with ``baseline_text`` (empty: compatible)."""
    try:
        reader, writer = avro.schema.parse(current_text), avro.schema.parse(baseline_text)
    except (avro.errors.SchemaParseException, ValueError) as exc:
        return [Incompatibility(name, "unparseable", "/", str(exc))]
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)  # type: ignore[no-untyped-call]
    found = []
    if result.compatibility is not SchemaCompatibilityType.compatible:
        kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities}))
        # avro merges results starting from the root's "/": keep it only when it is all there is.
        location = ", ".join(sorted(result.locations - {"/"})) or "/"
        found.append(Incompatibility(name, kinds, location, "; ".join(sorted(result.messages))))
    return found + _removed_defaults(name, json.loads(current_text), json.loads(baseline_text), "")


def check_backward(current_dir: Path, baseline_dir: Path) -> list[Incompatibility]:
    """Every incompatibility of the schemas in ``current_dir`` with those in ``baseline_dir``.

    A baseline schema missing from ``current_dir`` is incompatible (its topic's
    data could no longer be read); a schema with no baseline is new, hence fine.
    """
    found: list[Incompatibility] = []
    for baseline in sorted(Path(baseline_dir).glob("*.avsc")):
        current = Path(current_dir) / baseline.name
        if not current.exists():
            found.append(Incompatibility(baseline.name, "schema_removed", "/", "no current schema"))
            continue
        found += check_schema(baseline.name, current.read_text("utf-8"), baseline.read_text("utf-8"))
    return found


def run_check(current_dir: Path | None = None, baseline_dir: Path | None = None, out: TextIO | None = None) -> int:
    """Print one line per schema (ok / new / INCOMPATIBLE: why); return the exit code (0 when all ok)."""
    current_dir = Path(current_dir or AVRO_DIR)
    baseline_dir = Path(baseline_dir or BASELINE_DIR)
    out = out or sys.stdout
    problems = check_backward(current_dir, baseline_dir)
    by_schema: dict[str, list[Incompatibility]] = {}
    for problem in problems:
        by_schema.setdefault(problem.schema, []).append(problem)
    names = sorted({p.name for p in current_dir.glob("*.avsc")} | {p.name for p in baseline_dir.glob("*.avsc")})
    for name in names:
        if name in by_schema:
            why = " | ".join(str(problem) for problem in by_schema[name])
            print(f"{name}: INCOMPATIBLE: {why}", file=out)
        elif not (baseline_dir / name).exists():
            print(f"{name}: new (no baseline)", file=out)
        else:
            print(f"{name}: ok", file=out)
    return 1 if problems else 0
