"""The input gate: every bad message becomes a dead letter with its reason; valid ones pass once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processors.dedup import Deduplicator
from schemas.records import DeadLetter, FeedbackEvent, FeedbackKind, RequestEvent
from schemas.rules import FEEDBACK_VALUE_RANGES
from schemas.validation import record_rule
from schemas.serde import json_codec
from streams.edge import DLQ_MAX_VALUE_BYTES, InputGate, RawMessage
from tests.factories import make_feedback, make_request

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
    assert isinstance(g.admit_one(message(valid("r1"), key=b"r1")), RequestEvent)
    dup = g.admit_one(message(valid("r1"), key=b"r1", offset=8))
    assert isinstance(dup, DeadLetter) and dup.reason == "duplicate" and dup.offset == 8
    assert isinstance(g.admit_one(message(valid("r2", ts_ms=1_700_000_000_000 + 7_200_000), key=b"r2")), RequestEvent)
    late = g.admit_one(message(valid("r3", ts_ms=1_700_000_000_000), key=b"r3"))
    assert isinstance(late, DeadLetter) and late.reason == "too_late"


def test_huge_value_is_truncated_in_the_dead_letter() -> None:
    g = InputGate(json_codec(RequestEvent, max_event_bytes=1024), key_field=None, dedup_field=None, dedup=None, now_ms=lambda: 0)
    result = g.admit_one(message(b"y" * (DLQ_MAX_VALUE_BYTES + 10)))
    assert isinstance(result, DeadLetter) and len(result.value) == DLQ_MAX_VALUE_BYTES and "truncated" in result.error


def test_batch_keeps_order_and_loses_nothing() -> None:
    batch = [message(valid(f"r{i}"), key=f"r{i}".encode(), offset=i) if i % 3 else message(b"nope", offset=i)
             for i in range(30)]
    admitted = gate().admit(batch)
    assert len(admitted.records) + len(admitted.dead) == 30
    assert [m.offset for m, _ in admitted.records] == [i for i in range(30) if i % 3]
    assert [d.offset for d in admitted.dead] == list(range(0, 30, 3))


# -- event-time hygiene: future stamps, missing keys, feedback ranges --

NOW_MS = 1_700_000_000_000


def hygienic_gate(codec: Any = CODEC, key_field: str = "request_id") -> InputGate[Any]:
    record_type = RequestEvent if codec is CODEC else FeedbackEvent
    return InputGate(codec, key_field=key_field, dedup_field=None, dedup=None, now_ms=lambda: NOW_MS,
                     max_future_ms=300_000, rule=record_rule(record_type))


@pytest.mark.parametrize(("ahead_ms", "reason"), [(0, None), (300_000, None), (300_001, "from_future"),
                                                  (10 * 365 * 86_400_000, "from_future")])
def test_events_stamped_beyond_the_clock_skew_are_from_the_future(ahead_ms: int, reason: str | None) -> None:
    result = hygienic_gate().admit_one(message(valid("r1", ts_ms=NOW_MS + ahead_ms), key=b"r1"))
    if reason is None:
        assert isinstance(result, RequestEvent)
    else:
        assert isinstance(result, DeadLetter) and result.reason == reason and "ahead of the wall clock" in result.error


def test_the_future_check_is_off_without_a_skew() -> None:
    g = InputGate(CODEC, key_field="request_id", dedup_field=None, dedup=None, now_ms=lambda: 1)
    assert isinstance(g.admit_one(message(valid("r1", ts_ms=NOW_MS * 2), key=b"r1")), RequestEvent)


def test_a_missing_key_is_dead_lettered() -> None:
    result = hygienic_gate().admit_one(message(valid("r1", ts_ms=NOW_MS), key=None))
    assert isinstance(result, DeadLetter) and result.reason == "missing_key" and result.key is None


def test_a_topic_without_a_key_field_needs_no_key() -> None:
    g = InputGate(CODEC, key_field=None, dedup_field=None, dedup=None, now_ms=lambda: NOW_MS)
    assert isinstance(g.admit_one(message(valid("r1", ts_ms=NOW_MS), key=None)), RequestEvent)


FEEDBACK = json_codec(FeedbackEvent)


@pytest.mark.parametrize(("kind", "value", "reason"), [
    ("rating", 1.0, None), ("rating", 5.0, None), ("rating", 0.9, "out_of_range"), ("rating", 5.5, "out_of_range"),
    ("nps", 10.0, None), ("nps", 11.0, "out_of_range"), ("thumbs", -1.0, None), ("thumbs", 2.0, "out_of_range"),
    ("edit", 1.5, "out_of_range"), ("task_completed", 1.0, None), ("dwell", 45.0, None), ("dwell", -1.0, "out_of_range"),
    ("delete", 1.0, None),
])
def test_feedback_values_outside_their_kinds_range_are_dead_lettered(kind: str, value: float,
                                                                     reason: str | None) -> None:
    raw = FEEDBACK.encode(make_feedback("r1", ts_ms=NOW_MS, kind=kind, value=value))
    result = hygienic_gate(FEEDBACK).admit_one(message(raw, key=b"r1"))
    if reason is None:
        assert isinstance(result, FeedbackEvent) and result.value == value  # never coerced
    else:
        assert isinstance(result, DeadLetter) and result.reason == reason and kind in result.error


def test_every_feedback_kind_but_named_scores_declares_its_range() -> None:
    assert set(FEEDBACK_VALUE_RANGES) == {kind.value for kind in FeedbackKind} - {"score"}
