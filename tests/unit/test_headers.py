"""Kafka headers: the trace context follows an input to what it causes; dead letters carry their context."""

from __future__ import annotations

import orjson

from schemas.records import DeadLetter, Outcome
from streams.cli_dlq import ReplayReport, parse_since
from streams.edge import RawMessage
from streams.headers import REPLAYED_FROM, dead_letter_headers, replay_headers
from streams.stages import CorrelateStage
from tests.factories import make_request
from tests.unit.test_stages import T0, decode, env, msg

TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def with_headers(message: RawMessage, *headers: tuple[str, bytes]) -> RawMessage:
    return RawMessage(message.topic, message.partition, message.offset, message.key, message.value,
                      message.timestamp_ms, tuple(headers))


def test_an_outcome_carries_the_trace_context_of_its_request_and_nothing_else() -> None:
    stage = CorrelateStage(env())
    out = stage.handle([
        with_headers(msg("p.requests", make_request("r1", ts_ms=T0)), TRACE, ("x-tenant-secret", b"s")),
        msg("p.requests", make_request("r2", ts_ms=T0 + 1), 1),
    ])
    outcomes = [o for o in out if o.topic == "p.outcomes"]
    assert [decode(o, Outcome).request_id for o in outcomes] == ["r1", "r2"]
    assert outcomes[0].headers == (TRACE,)
    assert outcomes[1].headers is None


def test_a_dead_letter_keeps_its_record_and_says_where_and_why_in_headers() -> None:
    stage = CorrelateStage(env())
    (dead,) = stage.handle([with_headers(RawMessage("p.requests", 3, 41, b"k", b"{not json", T0), TRACE)])
    assert dead.topic == "p.dlq" and orjson.loads(dead.value)["reason"] == "malformed"
    headers = dict(dead.headers or ())
    assert headers["traceparent"] == TRACE[1]
    assert (headers["loopwise.error.topic"], headers["loopwise.error.partition"], headers["loopwise.error.offset"],
            headers["loopwise.error.reason"]) == (b"p.requests", b"3", b"41", b"malformed")
    assert headers["loopwise.error.message"].startswith(b"malformed: not valid UTF-8 JSON")


def test_a_replay_restores_the_original_headers_and_marks_its_origin() -> None:
    stage = CorrelateStage(env())
    (dead,) = stage.handle([with_headers(RawMessage("p.requests", 0, 1, b"k", b"[]", T0), TRACE)])
    replayed = dict(replay_headers(dead.headers, "p.dlq", 2, 7))
    assert replayed == {"traceparent": TRACE[1], REPLAYED_FROM: b"p.dlq/2/7"}
    # a record dead-lettered again after a replay does not pile up error headers
    again = dead_letter_headers(DeadLetter("p.requests", 0, 9, b"[]", "e", "r", 1), tuple(dead.headers or ()))
    assert sum(1 for name, _ in again if name == "loopwise.error.reason") == 1


def test_since_accepts_epoch_ms_iso_and_ages() -> None:
    assert parse_since("1700000000000", 5) == 1_700_000_000_000
    assert parse_since("2023-11-14T22:13:20Z", 0) == 1_700_000_000_000
    assert parse_since("30m", 3_600_000) == 1_800_000
    report = ReplayReport(replayed={"lw.requests": 2}, skipped={"older": 1})
    assert report.summary() == "replayed 2 to lw.requests; skipped 1 older"
