"""Backward-compatibility check of the .avsc files against their baseline."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from schemas.catalog import AVRO_DIR
from schemas.compat import Incompatibility, check_backward, run_check

NAME = "rollout_step.avsc"


def baseline() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((AVRO_DIR / NAME).read_text())
    return parsed


def dirs(tmp_path: Path, current: dict[str, Any] | None) -> tuple[Path, Path]:
    (tmp_path / "current").mkdir()
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / NAME).write_text(json.dumps(baseline()))
    if current is not None:
        (tmp_path / "current" / NAME).write_text(json.dumps(current))
    return tmp_path / "current", tmp_path / "baseline"


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def test_shipped_schemas_are_compatible_with_the_shipped_baseline() -> None:
    out = io.StringIO()
    assert run_check(out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == len(list(AVRO_DIR.glob("*.avsc"))) and "rollout_step.avsc: ok" in lines


def test_added_optional_field_with_default_is_compatible(tmp_path: Path) -> None:
    current = baseline()
    current["fields"].append({"name": "owner", "type": ["null", "string"], "default": None, "doc": "Who."})
    assert check_backward(*dirs(tmp_path, current)) == []


def test_added_field_without_default_is_incompatible(tmp_path: Path) -> None:
    current = baseline()
    current["fields"].append({"name": "owner", "type": "string", "doc": "Who."})
    (problem,) = check_backward(*dirs(tmp_path, current))
    assert (problem.schema, problem.kind) == (NAME, "reader_field_missing_default_value")
    assert "owner" in problem.message


def test_changed_type_is_incompatible(tmp_path: Path) -> None:
    current = baseline()
    field(current, "step")["type"] = "string"
    (problem,) = check_backward(*dirs(tmp_path, current))
    assert (problem.kind, problem.location) == ("type_mismatch", "/fields/3/type")


def test_removed_enum_symbol_is_incompatible(tmp_path: Path) -> None:
    current = baseline()
    field(current, "verdict")["type"]["symbols"].remove("hold")
    (problem,) = check_backward(*dirs(tmp_path, current))
    assert problem.kind == "missing_enum_symbols" and "hold" in problem.message


def test_removed_default_is_incompatible_by_loopwise_rule(tmp_path: Path) -> None:
    current = json.loads((AVRO_DIR / "insight.avsc").read_text())
    (tmp_path / "current").mkdir()
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "insight.avsc").write_text(json.dumps(current))
    del field(current, "severity")["default"]
    (tmp_path / "current" / "insight.avsc").write_text(json.dumps(current))
    assert check_backward(tmp_path / "current", tmp_path / "baseline") == [
        Incompatibility("insight.avsc", "default_removed", "severity", "the field's default was removed")]


def test_removed_schema_is_incompatible_and_run_check_says_why(tmp_path: Path) -> None:
    current_dir, baseline_dir = dirs(tmp_path, None)
    out = io.StringIO()
    assert run_check(current_dir, baseline_dir, out=out) == 1
    assert out.getvalue() == f"{NAME}: INCOMPATIBLE: schema_removed at /: no current schema\n"


@pytest.mark.parametrize("text", ["{not json", '{"type": "record", "name": "X"}'])
def test_unparseable_current_schema_is_reported(tmp_path: Path, text: str) -> None:
    current_dir, baseline_dir = dirs(tmp_path, None)
    (current_dir / NAME).write_text(text)
    (problem,) = check_backward(current_dir, baseline_dir)
    assert problem.kind == "unparseable"
