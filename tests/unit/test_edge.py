"""The input gate: every bad message becomes a dead letter with its reason; valid ones pass once."""

from __future__ import annotations

import orjson
import pytest

from processors.dedup import Deduplicator
from schemas.records import DeadLetter, RequestEvent
from schemas.serde import json_codec
from streams.edge import DLQ_MAX_VALUE_BYTES, InputGate, RawMessage
from tests.factories import make_request

CODEC = json_codec(RequestEvent, max_event_bytes=4096)


def gate() -> InputGate[RequestEvent]:
    return InputGate(CODEC, key_field="request_id", dedup_field="request_id",
                     dedup=Deduplicator(3_600_000), now_ms=lambda: 42)


def message(value: bytes | None, key: bytes | None = None, offset: int = 7) -> RawMessage:
    return RawMessage(topic="lw.requests", partition=2, offset=offset, key=key, value=value, timestamp_ms=1)


def valid(request_id: str = "r1", ts_ms: int = 1_700_000_000_000) -> bytes:
    return CODEC.encode(make_request(request_id, ts_ms=ts_ms))


def test_valid_message_passes() -> None:
    result = gate().admit_one(message(valid(), key=b"r1"))
    assert isinstance(result, RequestEvent) and result.request_id == "r1"


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xfe", "malformed"),
    (b"{\"request_id\": ", "malformed"),
    (b"", "empty"),
    (None, "empty"),
    (b"[1, 2]", "not_an_object"),
    (b"x" * 5000, "too_large"),
])
def test_unreadable_values_are_dead_lettered_with_reason(value: bytes | None, reason: str) -> None:
    result = gate().admit_one(message(value))
    assert isinstance(result, DeadLetter)
    assert (result.reason, result.source_topic, result.partition, result.offset, result.ts_ms) == (reason, "lw.requests", 2, 7, 42)
    assert result.value == (value or b"")


def test_schema_violations_name_the_field() -> None:
    data = orjson.loads(valid())
    data["context"]["privacy_level"] = "secret"
    result = gate().admit_one(message(orjson.dumps(data)))
    assert isinstance(result, DeadLetter) and result.reason == "bad_enum" and "context.privacy_level" in result.error


def test_key_must_match_request_id() -> None:
    result = gate().admit_one(message(valid("r1"), key=b"other"))
    assert isinstance(result, DeadLetter) and result.reason == "key_mismatch"


def test_duplicate_and_too_late() -> None:
    g = gate()
    assert isinstance(g.admit_one(message(valid("r1"))), RequestEvent)
    dup = g.admit_one(message(valid("r1"), offset=8))
    assert isinstance(dup, DeadLetter) and dup.reason == "duplicate" and dup.offset == 8
    assert isinstance(g.admit_one(message(valid("r2", ts_ms=1_700_000_000_000 + 7_200_000))), RequestEvent)
    late = g.admit_one(message(valid("r3", ts_ms=1_700_000_000_000)))
    assert isinstance(late, DeadLetter) and late.reason == "too_late"


def test_huge_value_is_truncated_in_the_dead_letter() -> None:
    g = InputGate(json_codec(RequestEvent, max_event_bytes=1024), key_field=None, dedup_field=None, dedup=None, now_ms=lambda: 0)
    result = g.admit_one(message(b"y" * (DLQ_MAX_VALUE_BYTES + 10)))
    assert isinstance(result, DeadLetter) and len(result.value) == DLQ_MAX_VALUE_BYTES and "truncated" in result.error


def test_batch_keeps_order_and_loses_nothing() -> None:
    batch = [message(valid(f"r{i}"), offset=i) if i % 3 else message(b"nope", offset=i) for i in range(30)]
    admitted = gate().admit(batch)
    assert len(admitted.records) + len(admitted.dead) == 30
    assert [m.offset for m, _ in admitted.records] == [i for i in range(30) if i % 3]
    assert [d.offset for d in admitted.dead] == list(range(0, 30, 3))
