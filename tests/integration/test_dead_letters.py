"""Bad input lands in the DLQ with its reason, original bytes and source position; valid input is all processed."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings as hypothesis_settings, strategies as st

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import RequestEvent
from schemas.serde import SchemaError, json_codec
from streams.edge import DLQ_MAX_VALUE_BYTES
from tests.conftest import wait_until
from tests.factories import make_feedback, make_log, make_metric, make_request
from tests.integration.worker_proc import (
    DLQ_CODEC, WorkerProcess, dead_letters, decoded, produce_tracked, read_topic, running_worker, wait_for_metric,
)

T0 = 1_700_000_000_000
MAX_EVENT_BYTES = 4096
WORKER_ENV = {"LOOPWISE_MAX_EVENT_BYTES": str(MAX_EVENT_BYTES)}
HOUR_MS = 3_600_000
FUTURE_MS = 1_700_000_000_000 + 13 * 365 * 86_400_000  # 2036: far beyond any clock skew


@dataclass(frozen=True)
class Sent:
    """One produced input and what the worker must make of it (``reason`` None: processed)."""

    logical: str
    key: bytes | None
    value: bytes
    reason: str | None


def to_dict(record: Any) -> dict[str, Any]:
    return json_codec(type(record)).to_dict(record)


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def request_dict(request_id: str, **changes: Any) -> dict[str, Any]:
    data = to_dict(make_request(request_id, ts_ms=T0))
    data.update(changes)
    return data


def valid(logical: str, key: str, record: Any) -> Sent:
    return Sent(logical, key.encode(), json_codec(type(record)).encode(record), None)


def bad(logical: str, key: str | None, value: bytes, reason: str) -> Sent:
    return Sent(logical, None if key is None else key.encode(), value, reason)


def interleaved_inputs() -> list[Sent]:
    """Bad inputs of every kind that does not depend on order, each followed by a valid request."""
    missing = request_dict("b-missing")
    del missing["route"]
    nan = dumps(request_dict("b-nan", latency_ms=123.0)).replace(b"123.0", b"NaN")
    assert b"NaN" in nan
    bads = [
        bad("requests", "b-malformed", b'{"request_id": "b-malformed", ', "malformed"),
        bad("requests", "b-utf8", b'{"request_id": "\xc3\x28"}', "malformed"),
        bad("requests", "b-empty", b"", "empty"),
        bad("requests", "b-array", b'[{"request_id": "b-array"}]', "not_an_object"),
        bad("requests", "b-missing", dumps(missing), "missing_field"),
        bad("requests", "b-unknown", dumps(request_dict("b-unknown", surprise=1)), "unknown_field"),
        bad("requests", "b-type", dumps(request_dict("b-type", latency_ms="fast")), "wrong_type"),
        bad("requests", "b-bool", dumps(request_dict("b-bool", tokens_in=True)), "wrong_type"),
        bad("requests", "b-enum", dumps(request_dict("b-enum", status="exploded")), "bad_enum"),
        bad("requests", "b-nan", nan, "not_finite"),
        bad("requests", "b-negative", dumps(request_dict("b-negative", latency_ms=-1.0)), "out_of_range"),
        bad("requests", "b-large", dumps(request_dict("b-large", error_message="x" * MAX_EVENT_BYTES)), "too_large"),
        bad("requests", "b-huge", dumps(request_dict("b-huge", error_message="y" * 600 * 1024)), "too_large"),
        bad("requests", "someone-else", dumps(request_dict("b-key")), "key_mismatch"),
        bad("feedback", "r-0", dumps({**to_dict(make_feedback("r-0")), "kind": "shrug"}), "bad_enum"),
        bad("metrics", "gw", dumps({**to_dict(make_metric("gw")), "value": "high"}), "wrong_type"),
        bad("logs", "svc", dumps({**to_dict(make_log("svc")), "level": "loud"}), "bad_enum"),
        bad("workflows", "wf", b"workflow: support-bot\n", "malformed"),
        bad("jobs", "job-1", dumps({"job_id": "job-1", "ts_ms": T0}), "missing_field"),
        bad("route.requests", "rr-1", dumps({"request_id": "rr-1"}), "missing_field"),
        bad("requests", None, dumps(request_dict("b-nokey")), "missing_key"),
        bad("feedback", None, dumps(to_dict(make_feedback("r-1", feedback_id="fb-nokey"))), "missing_key"),
        bad("feedback", "r-2", dumps(to_dict(make_feedback("r-2", kind="rating", value=0.9))), "out_of_range"),
        # Stamped ten years ahead, on (very likely) every partition: had one reached the correlator,
        # its partition's clock would dead-letter every later valid request as too_late.
        *[bad("requests", f"b-future-{i}", dumps(request_dict(f"b-future-{i}", ts_ms=FUTURE_MS)), "from_future")
          for i in range(8)],
        bad("feedback", "r-3", dumps(to_dict(make_feedback("r-3", ts_ms=FUTURE_MS))), "from_future"),
    ]
    out: list[Sent] = []
    for index, item in enumerate(bads):
        out.append(item)
        out.append(valid("requests", f"r-{index}", make_request(f"r-{index}", ts_ms=T0 + index)))
        out.append(valid("feedback", f"r-{index}", make_feedback(f"r-{index}", ts_ms=T0 + 1_000 + index)))
    # Its partition's requests reach T0 + 2 h here; the feedback catches up in ordered_inputs().
    out.append(valid("requests", "late", make_request("late", ts_ms=T0 + 2 * HOUR_MS)))
    return out


def ordered_inputs() -> list[Sent]:
    """Bad inputs that are bad only after another (same key, so same partition, so in order)."""
    # At the partitions' newest event time: never too late, whatever the order the two topics are read in.
    again = json_codec(RequestEvent).encode(make_request("dup", ts_ms=T0 + 2 * HOUR_MS + 1))
    feedback = make_feedback("r-1", ts_ms=T0 + 5_000, feedback_id="fb-dup")
    stale = make_feedback("late", ts_ms=T0 + 2_000, feedback_id="fb-old")
    return [
        valid("requests", "dup", make_request("dup", ts_ms=T0 + 2 * HOUR_MS)),
        bad("requests", "dup", again, "duplicate"),
        valid("feedback", "r-1", feedback),
        bad("feedback", "r-1", json_codec(type(feedback)).encode(feedback), "duplicate"),
        # Sent last: with it, both inputs of the partition are 2 h ahead (the watermark follows the
        # slower input), so feedback from 2 h ago can only belong to a closed window: too late.
        valid("feedback", "late", make_feedback("late", ts_ms=T0 + 2 * HOUR_MS, feedback_id="fb-new")),
        bad("feedback", "late", json_codec(type(stale)).encode(stale), "too_late"),
    ]


def produce_and_settle(settings: Settings, worker: WorkerProcess, batch: list[Sent],
                       before: list[Sent]) -> list[tuple[int | None, int | None]]:
    """Produce ``batch``; wait until the worker has counted all of ``before + batch`` in or dead."""
    placed = produce_tracked(settings, [(settings.topic(s.logical), s.key, s.value) for s in batch])
    everything = before + batch
    for logical in {s.logical for s in everything}:
        n_valid = sum(1 for s in everything if s.logical == logical and s.reason is None)
        wait_for_metric(worker, "loopwise_events_in_total", n_valid, topic=settings.topic(logical))
        for reason in {s.reason for s in everything if s.logical == logical and s.reason is not None}:
            n_bad = sum(1 for s in everything if s.logical == logical and s.reason == reason)
            wait_for_metric(worker, "loopwise_dlq_total", n_bad, topic=settings.topic(logical), reason=reason)
    return placed


def test_every_kind_of_bad_input_is_dead_lettered_and_every_valid_one_processed(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    first, second = interleaved_inputs(), ordered_inputs()
    with running_worker(settings, tmp_path / "worker.log", WORKER_ENV) as worker:
        placed = produce_and_settle(settings, worker, first, [])
        placed += produce_and_settle(settings, worker, second, first)
        sent = first + second
        expected_bad = [(s, where) for s, where in zip(sent, placed) if s.reason is not None]
        messages = read_topic(settings, settings.topic("dlq"), at_least=len(expected_bad))
        letters = [DLQ_CODEC.decode(message.value()) for message in messages]
        assert len(letters) == len(expected_bad) == 35
        assert [message.key() for message in messages] == [letter.source_topic.encode() for letter in letters]
        by_position = {(letter.source_topic, letter.partition, letter.offset): letter for letter in letters}
        for item, (partition, offset) in expected_bad:
            letter = by_position[(settings.topic(item.logical), partition, offset)]
            assert (letter.reason, letter.key) == (item.reason, item.key), letter.error
            assert letter.value == item.value[:DLQ_MAX_VALUE_BYTES]
        huge = next(letter for letter in letters if letter.key == b"b-huge")
        assert len(huge.value) == DLQ_MAX_VALUE_BYTES and "truncated" in huge.error
        # On the wire the original key and bytes are base64, so any bytes survive JSON.
        wires = {base64.b64decode(wire["key"]): wire for wire in decoded(messages) if wire["key"] is not None}
        assert base64.b64decode(wires[b"b-utf8"]["value"]) == b'{"request_id": "\xc3\x28"}'

        expected_ids = sorted({s.key.decode() for s in sent if s.logical == "requests" and s.reason is None})
        outcomes = decoded(read_topic(settings, settings.topic("outcomes"), at_least=len(expected_ids)))
        assert sorted(o["request_id"] for o in outcomes if not o["is_final"]) == expected_ids
        assert len(expected_ids) == 34
        assert worker.is_running


# -- property: whatever arrives is processed or dead-lettered, never lost --

REQUEST_FIELDS = sorted(to_dict(make_request("x")))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
mutations = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(REQUEST_FIELDS), json_values),
    st.tuples(st.just("drop"), st.sampled_from(REQUEST_FIELDS), st.none()),
    st.tuples(st.just("add"), st.text(min_size=1, max_size=6), json_values),
    st.tuples(st.just("keep"), st.none(), st.none()),
)
payloads = st.one_of(st.binary(max_size=64).map(lambda b: ("bytes", b)), mutations.map(lambda m: ("json", m)))


def build(payload: tuple[str, Any], request_id: str) -> bytes:
    kind, detail = payload
    if kind == "bytes":
        return detail
    action, name, value = detail
    data = request_dict(request_id)
    if action == "set" and name not in ("request_id", "ts_ms"):  # a unique id keeps dedup out of the oracle
        data[name] = value
    elif action == "drop":
        data.pop(name)
    elif action == "add" and name not in data:
        data[name] = value
    return dumps(data)


def is_valid(raw: bytes) -> bool:
    try:
        json_codec(RequestEvent, max_event_bytes=MAX_EVENT_BYTES).decode(raw)
    except SchemaError:
        return False
    return True


def accounted(worker: WorkerProcess, topic: str) -> float:
    """Inputs of ``topic`` the worker has processed or dead-lettered so far."""
    dead = sum(value for (name, labels), value in worker.samples().items()
               if name == "loopwise_dlq_total" and ("topic", topic) in labels)
    return worker.metric("loopwise_events_in_total", topic=topic) + dead


def test_random_input_is_processed_or_dead_lettered_never_lost(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    sent: list[bytes] = []
    topic = settings.topic("requests")
    with running_worker(settings, tmp_path / "worker.log", WORKER_ENV) as worker:

        @hypothesis_settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(payloads, min_size=1, max_size=6))
        @example([("json", ("keep", None, None)), ("bytes", b"")])  # at least one of each fate
        def check(batch: list[tuple[str, Any]]) -> None:
            values = [build(payload, f"p-{len(sent) + i}") for i, payload in enumerate(batch)]
            produce_tracked(settings, [(topic, f"p-{len(sent) + i}".encode(), v) for i, v in enumerate(values)])
            sent.extend(values)
            wait_until(lambda: accounted(worker, topic) == len(sent), 60, interval_s=0.2,
                       message=lambda: f"{accounted(worker, topic)} of {len(sent)} accounted for")
            assert worker.metric("loopwise_events_in_total", topic=topic) == sum(map(is_valid, sent))

        check()
        n_valid = sum(map(is_valid, sent))
        outcomes = read_topic(settings, settings.topic("outcomes"), at_least=n_valid)
        letters = dead_letters(settings, at_least=len(sent) - n_valid)
        assert (len(outcomes), len(letters)) == (n_valid, len(sent) - n_valid)
