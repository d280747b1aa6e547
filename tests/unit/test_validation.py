"""Validation rules: the error type, ranges at their edges, bytes, limits of the dead-letter record."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.records import Command, DeadLetter, RouteDecision
from schemas.serde import REASONS, SchemaError, json_codec
from schemas.validation import LONG_MAX, MAX_STRING_CHARS

DECISIONS = json_codec(RouteDecision)
DECISION = RouteDecision("r1", 1_700_000_000_000, "support-bot", "summarize|public", "gpt-large", 0.8, 3, "best")


def decision_with(**changes: Any) -> RouteDecision:
    return DECISIONS.from_dict({**DECISIONS.to_dict(DECISION), **changes})


def reason_and_field(call: Any) -> tuple[str, str | None]:
    with pytest.raises(SchemaError) as caught:
        call()
    return caught.value.reason, caught.value.field


def test_schema_error_is_a_value_error_with_reason_field_and_message() -> None:
    error = SchemaError("bad_enum", "'x' is not one of a, b").within("level").within("context")
    assert isinstance(error, ValueError)
    assert (error.reason, error.field, error.detail) == ("bad_enum", "context.level", "'x' is not one of a, b")
    assert str(error) == "bad_enum: field 'context.level': 'x' is not one of a, b"
    assert str(SchemaError("empty", "no payload")) == "empty: no payload"
    assert SchemaError("wrong_type", "x").within("[2]").within("routes").field == "routes[2]"


def test_reasons_cover_the_documented_codes() -> None:
    assert set(REASONS) >= {"too_large", "empty", "malformed", "not_an_object", "missing_field", "unknown_field",
                            "wrong_type", "bad_enum", "out_of_range", "not_finite", "bad_wire_format"}


@pytest.mark.parametrize("probability", [0.0, 1.0, 1])
def test_probability_edges_are_accepted(probability: float) -> None:
    decision = decision_with(probability=probability)
    assert decision.probability == float(probability) and type(decision.probability) is float


@pytest.mark.parametrize("probability", [-1e-9, 1.0000001, 2])
def test_probability_outside_unit_interval_is_out_of_range(probability: float) -> None:
    assert reason_and_field(lambda: decision_with(probability=probability)) == ("out_of_range", "probability")


def test_long_bounds() -> None:
    assert decision_with(policy_version=LONG_MAX).policy_version == LONG_MAX
    assert reason_and_field(lambda: decision_with(policy_version=LONG_MAX + 1)) == ("out_of_range", "policy_version")
    assert reason_and_field(lambda: decision_with(policy_version=-1)) == ("out_of_range", "policy_version")


def test_string_cap_is_inclusive() -> None:
    assert len(decision_with(reason="x" * MAX_STRING_CHARS).reason) == MAX_STRING_CHARS
    assert reason_and_field(lambda: decision_with(reason="x" * (MAX_STRING_CHARS + 1))) == ("out_of_range", "reason")


def test_optional_field_accepts_null_and_checks_a_value() -> None:
    assert decision_with(variant=None).variant is None
    assert reason_and_field(lambda: decision_with(variant=7)) == ("wrong_type", "variant")


def test_command_map_and_bool_are_checked() -> None:
    codec = json_codec(Command)
    command = Command("c1", 1, "gpt-large", "failover", "latency", "anomaly a1", 2, "remediate", "sig",
                      params={"to": "local-small"})
    plain = codec.to_dict(command)
    assert codec.from_dict(plain) == command
    bad_param = {**plain, "params": {"to": None}}
    assert reason_and_field(lambda: codec.from_dict(bad_param)) == ("wrong_type", "params.to")
    assert reason_and_field(lambda: codec.from_dict({**plain, "is_dry_run": 0})) == ("wrong_type", "is_dry_run")
    assert reason_and_field(lambda: codec.from_dict({**plain, "command_id": ""})) == ("out_of_range", "command_id")


def test_dead_letter_bytes_travel_as_base64_and_bad_base64_is_wrong_type() -> None:
    codec = json_codec(DeadLetter)
    letter = DeadLetter("lw.requests", 2, 41, b"\x00\xff{", "malformed: x", "malformed", 7, key=b"r1")
    assert orjson.loads(codec.encode(letter))["value"] == "AP97"
    assert codec.decode(codec.encode(letter)) == letter
    bad = {**codec.to_dict(letter), "value": "not base64!"}
    assert reason_and_field(lambda: codec.from_dict(bad)) == ("wrong_type", "value")


def test_dead_letter_limit_leaves_room_for_a_whole_base64_event() -> None:
    codec = json_codec(DeadLetter, max_event_bytes=3000)
    letter = DeadLetter("lw.requests", 0, 1, b"x" * 3000, "too_large: ...", "too_large", 7)
    assert codec.decode(codec.encode(letter)) == letter
    other = json_codec(RouteDecision, max_event_bytes=3000)
    padded = DECISIONS.encode(decision_with(reason="x" * 3000))
    assert reason_and_field(lambda: other.decode(padded)) == ("too_large", None)
