"""JSON codec: exact reasons and field paths for bad input, and nothing but SchemaError for any bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import PrivacyLevel, RequestContext, RequestEvent, Status, WorkflowDefinition
from schemas.serde import REASONS, SchemaError, json_codec
from tests.factories import make_request, make_workflow

REQUESTS = json_codec(RequestEvent)
WORKFLOWS = json_codec(WorkflowDefinition)


def request_json(change: Callable[[dict[str, Any]], None]) -> bytes:
    data = REQUESTS.to_dict(make_request())
    change(data)
    return orjson.dumps(data)


def workflow_json(change: Callable[[dict[str, Any]], None]) -> bytes:
    data = WORKFLOWS.to_dict(make_workflow())
    change(data)
    return orjson.dumps(data)


GOOD = REQUESTS.encode(make_request())
BAD_REQUESTS: list[tuple[str, Any, str, str | None]] = [
    ("non_utf8", b'{"request_id": "\xff\xfe"}', "malformed", None),
    ("garbage", b"\x80\x81\x82", "malformed", None),
    ("truncated", GOOD[:-7], "malformed", None),
    ("empty", b"", "empty", None),
    ("none", None, "empty", None),
    ("top_level_array", b"[1, 2]", "not_an_object", None),
    ("top_level_string", b'"hello"', "not_an_object", None),
    ("missing_field", request_json(lambda d: d.pop("latency_ms")), "missing_field", "latency_ms"),
    ("unknown_field", request_json(lambda d: d.update(latency_s=1.0)), "unknown_field", "latency_s"),
    ("wrong_type", request_json(lambda d: d.update(tokens_in="500")), "wrong_type", "tokens_in"),
    ("bool_for_int", request_json(lambda d: d.update(tokens_out=True)), "wrong_type", "tokens_out"),
    ("str_for_float", request_json(lambda d: d.update(cost_usd="0.1")), "wrong_type", "cost_usd"),
    ("float_for_int", request_json(lambda d: d.update(ts_ms=1.5)), "wrong_type", "ts_ms"),
    ("null_for_required", request_json(lambda d: d.update(route=None)), "wrong_type", "route"),
    ("bad_enum", request_json(lambda d: d.update(status="okay")), "bad_enum", "status"),
    ("nan", GOOD.replace(b'"latency_ms":800.0', b'"latency_ms":NaN'), "not_finite", "latency_ms"),
    ("infinity", GOOD.replace(b'"cost_usd":0.002', b'"cost_usd":-Infinity'), "not_finite", "cost_usd"),
    ("negative_latency", request_json(lambda d: d.update(latency_ms=-1.0)), "out_of_range", "latency_ms"),
    ("negative_ts", request_json(lambda d: d.update(ts_ms=-5)), "out_of_range", "ts_ms"),
    ("empty_id", request_json(lambda d: d.update(request_id="")), "out_of_range", "request_id"),
    ("huge_string", request_json(lambda d: d.update(error_message="x" * 70_000)), "out_of_range", "error_message"),
    ("nested_wrong_type", request_json(lambda d: d["context"].update(privacy_level=2)),
     "wrong_type", "context.privacy_level"),
    ("nested_bad_enum", request_json(lambda d: d["context"].update(privacy_level="secret")),
     "bad_enum", "context.privacy_level"),
    ("nested_missing", request_json(lambda d: d["context"].pop("tenant")), "missing_field", "context.tenant"),
    ("nested_not_object", request_json(lambda d: d.update(context=[])), "wrong_type", "context"),
    ("map_value_type", request_json(lambda d: d["context"].update(attributes={"region": 3})),
     "wrong_type", "context.attributes.region"),
    ("confluent_frame", b"\x00\x00\x00\x00\x01\x0ar1", "bad_wire_format", None),
    ("not_bytes", '{"a": 1}', "bad_wire_format", None),
]
BAD_WORKFLOWS: list[tuple[str, bytes, str, str | None]] = [
    ("array_element_type", workflow_json(lambda d: d["routes"].append("gpt-small")), "wrong_type", "routes[2]"),
    ("array_element_enum", workflow_json(lambda d: d["routes"][1].update(max_privacy="top")),
     "bad_enum", "routes[1].max_privacy"),
    ("array_not_array", workflow_json(lambda d: d.update(context_keys="task")), "wrong_type", "context_keys"),
    ("share_over_one", workflow_json(lambda d: d.update(rollout={"steps": [0.1, 1.5]})),
     "out_of_range", "rollout.steps[1]"),
    ("probability_in_route", workflow_json(lambda d: d["routes"][0].update(prior_quality=-0.1)),
     "out_of_range", "routes[0].prior_quality"),
]


@pytest.mark.parametrize(("raw", "reason", "field"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_is_rejected_with_reason_and_field(raw: Any, reason: str, field: str | None) -> None:
    with pytest.raises(SchemaError) as caught:
        REQUESTS.decode(raw)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert reason in REASONS


@pytest.mark.parametrize(("raw", "reason", "field"), [case[1:] for case in BAD_WORKFLOWS],
                         ids=[case[0] for case in BAD_WORKFLOWS])
def test_bad_workflow_is_rejected_with_reason_and_field(raw: bytes, reason: str, field: str) -> None:
    with pytest.raises(SchemaError) as caught:
        WORKFLOWS.decode(raw)
    assert (caught.value.reason, caught.value.field) == (reason, field)


def test_size_is_checked_before_parsing() -> None:
    small = json_codec(RequestEvent, max_event_bytes=len(GOOD) - 1)
    with pytest.raises(SchemaError) as caught:
        small.decode(GOOD)
    assert (caught.value.reason, str(caught.value)) == (
        "too_large", f"too_large: {len(GOOD)} bytes exceeds the limit of {len(GOOD) - 1}")
    with pytest.raises(SchemaError, match="^too_large"):
        small.decode(b"[" * len(GOOD))  # would be malformed if parsed


def test_message_names_field_and_offending_value() -> None:
    with pytest.raises(SchemaError) as caught:
        REQUESTS.decode(request_json(lambda d: d["context"].update(privacy_level="secret")))
    assert str(caught.value) == (
        "bad_enum: field 'context.privacy_level': 'secret' is not one of public, internal, restricted")
    with pytest.raises(SchemaError) as caught:
        REQUESTS.decode(request_json(lambda d: d.update(tokens_in="y" * 500)))
    assert str(caught.value) == "wrong_type: field 'tokens_in': expected an integer, got str '" + "y" * 79 + "... (502 chars)"


def test_decode_gives_enum_members_tuples_and_dicts() -> None:
    workflow = WORKFLOWS.decode(WORKFLOWS.encode(make_workflow()))
    assert workflow == make_workflow()
    assert type(workflow.routes) is tuple and type(workflow.context_keys) is tuple
    assert type(workflow.routes[1].max_privacy) is PrivacyLevel
    request = REQUESTS.decode(request_json(lambda d: d["context"].update(attributes={"region": "eu"})))
    assert type(request.status) is Status and type(request.context.attributes) is dict
    assert request.context.attributes == {"region": "eu"}


def test_absent_optional_fields_take_their_defaults() -> None:
    data = {"request_id": "r9", "ts_ms": 5, "workflow": "w", "workflow_version": "v1", "route": "a",
            "context": {"tenant": "t", "task": "k"}, "latency_ms": 3, "cost_usd": 0,
            "tokens_in": 1, "tokens_out": 2, "status": "timeout"}
    request = REQUESTS.decode(orjson.dumps(data))
    assert request == make_request("r9", 5, workflow="w", route="a", latency_ms=3.0, cost_usd=0.0, tokens_in=1,
                                   tokens_out=2, status=Status.TIMEOUT,
                                   context=RequestContext("t", "k"))
    assert type(request.latency_ms) is float


def test_from_dict_validates_and_to_dict_is_json_ready() -> None:
    plain = REQUESTS.to_dict(make_request())
    assert plain["status"] == "ok" and type(plain["status"]) is str
    assert REQUESTS.from_dict(plain) == make_request()
    with pytest.raises(SchemaError) as caught:
        REQUESTS.from_dict([1, 2])  # type: ignore[arg-type]
    assert caught.value.reason == "not_an_object"
    with pytest.raises(SchemaError) as caught:
        REQUESTS.from_dict({**plain, "latency_ms": float("nan")})
    assert (caught.value.reason, caught.value.field) == ("not_finite", "latency_ms")


def test_encode_refuses_another_record_type() -> None:
    with pytest.raises(TypeError, match="expected RequestEvent, got WorkflowDefinition"):
        REQUESTS.encode(make_workflow())  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_schema_error(raw: bytes) -> None:
    try:
        assert type(REQUESTS.decode(raw)) is RequestEvent
    except SchemaError as exc:
        assert exc.reason in REASONS


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
                    max_leaves=12))
def test_random_json_decode_or_raise_schema_error(value: Any) -> None:
    raw = orjson.dumps(value) if not isinstance(value, float) or value == value else b"NaN"
    try:
        WORKFLOWS.decode(raw)
    except SchemaError as exc:
        assert exc.reason in REASONS
