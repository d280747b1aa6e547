"""Outcome correlation: early, late, duplicate and missing feedback, with exact outcomes."""

from __future__ import annotations

import orjson
import pytest

from processors.correlation import FeedbackVerdict, OutcomeCorrelator, combined_quality, feedback_quality
from processors.workflows import WorkflowRegistry
from schemas.records import FeedbackKind, Status
from tests.factories import make_feedback, make_request, make_workflow

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


@pytest.fixture()
def correlator() -> OutcomeCorrelator:
    return OutcomeCorrelator(WorkflowRegistry())


def test_request_gives_a_provisional_outcome_at_once(correlator: OutcomeCorrelator) -> None:
    outcome = correlator.on_request(make_request("r1", ts_ms=T0, latency_ms=1000.0, cost_usd=0.004))
    assert outcome is not None
    assert (outcome.is_final, outcome.quality, outcome.feedback_count) == (False, None, 0)
    # Neutral quality 0.5 until feedback says otherwise: 0.5 - 0.125 - 0.1
    assert outcome.reward == pytest.approx(0.275)
    assert outcome.segment == "task=summarize|privacy_level=public"


def test_final_outcome_when_window_closes_with_feedback(correlator: OutcomeCorrelator) -> None:
    correlator.on_request(make_request("r1", ts_ms=T0))
    assert correlator.on_feedback(make_feedback("r1", ts_ms=T0 + 5_000, kind="rating", value=5)) is FeedbackVerdict.ACCEPTED
    assert correlator.advance(T0 + HOUR_MS - 1) == []
    [final] = correlator.advance(T0 + HOUR_MS)
    assert (final.request_id, final.is_final, final.quality, final.feedback_count) == ("r1", True, 1.0, 1)
    assert final.ts_ms == T0 + HOUR_MS and final.request_ts_ms == T0
    assert correlator.advance(T0 + 10 * HOUR_MS) == []  # emitted once


def test_feedback_before_its_request_is_kept(correlator: OutcomeCorrelator) -> None:
    assert correlator.on_feedback(make_feedback("r1", ts_ms=T0 - 1_000, kind="thumbs", value=0)) is FeedbackVerdict.ACCEPTED
    provisional = correlator.on_request(make_request("r1", ts_ms=T0))
    assert provisional is not None and provisional.quality == 0.0 and provisional.feedback_count == 1
    [final] = correlator.advance(T0 + HOUR_MS)
    assert final.quality == 0.0 and final.feedback_count == 1


def test_duplicate_feedback_is_counted_once(correlator: OutcomeCorrelator) -> None:
    correlator.on_request(make_request("r1", ts_ms=T0))
    fb = make_feedback("r1", ts_ms=T0 + 1, kind="thumbs", value=1, feedback_id="f1")
    assert correlator.on_feedback(fb) is FeedbackVerdict.ACCEPTED
    assert correlator.on_feedback(fb) is FeedbackVerdict.DUPLICATE
    [final] = correlator.advance(T0 + HOUR_MS)
    assert final.feedback_count == 1


def test_late_feedback_is_refused_not_folded_in(correlator: OutcomeCorrelator) -> None:
    correlator.on_request(make_request("r1", ts_ms=T0))
    [final] = correlator.advance(T0 + HOUR_MS)
    assert final.feedback_count == 0
    late = make_feedback("r1", ts_ms=T0 + HOUR_MS + 1, kind="thumbs", value=1)
    assert correlator.on_feedback(late) is FeedbackVerdict.LATE
    assert correlator.advance(T0 + 5 * HOUR_MS) == []


def test_missing_feedback_gives_a_final_without_quality(correlator: OutcomeCorrelator) -> None:
    correlator.on_request(make_request("r1", ts_ms=T0, status=Status.ERROR))
    [final] = correlator.advance(T0 + HOUR_MS)
    assert final.quality is None and final.reward_error == 1.0 and final.reward_quality == 0.0


def test_orphan_feedback_expires_without_an_outcome(correlator: OutcomeCorrelator) -> None:
    correlator.on_feedback(make_feedback("ghost", ts_ms=T0))
    assert correlator.advance(T0 + HOUR_MS) == []
    assert len(correlator) == 0


def test_duplicate_request_gives_no_second_outcome(correlator: OutcomeCorrelator) -> None:
    assert correlator.on_request(make_request("r1", ts_ms=T0)) is not None
    assert correlator.on_request(make_request("r1", ts_ms=T0)) is None
    assert len(correlator.advance(T0 + HOUR_MS)) == 1
    assert correlator.on_request(make_request("r1", ts_ms=T0)) is None  # after close, still refused


def test_workflow_window_and_objective_are_used() -> None:
    registry = WorkflowRegistry()
    registry.update(make_workflow(feedback_window_s=60.0, context_keys=("tenant",)))
    correlator = OutcomeCorrelator(registry)
    outcome = correlator.on_request(make_request("r1", ts_ms=T0))
    assert outcome is not None and outcome.segment == "tenant=acme"
    assert correlator.advance(T0 + 59_999) == []
    assert [o.request_id for o in correlator.advance(T0 + 60_000)] == ["r1"]


def test_watermark_comes_from_events_not_the_clock() -> None:
    correlator = OutcomeCorrelator(WorkflowRegistry(), idle_after=1)  # no feedback comes: it is idle at once
    correlator.on_request(make_request("r1", ts_ms=T0))
    correlator.on_request(make_request("r2", ts_ms=T0 + HOUR_MS))  # advances the watermark
    assert [o.request_id for o in correlator.advance()] == ["r1"]


def test_watermark_waits_for_the_slower_input_unless_it_is_idle() -> None:
    correlator = OutcomeCorrelator(WorkflowRegistry(), idle_after=5)
    correlator.on_feedback(make_feedback("a", ts_ms=T0))
    for i in range(4):  # requests read ahead of feedback (a backlog): the watermark waits
        correlator.on_request(make_request(f"r{i}", ts_ms=T0 + (i + 1) * HOUR_MS))
    assert correlator.watermark_ms == T0
    correlator.on_feedback(make_feedback("b", ts_ms=T0 + HOUR_MS))
    assert correlator.watermark_ms == T0 + HOUR_MS
    for i in range(5):  # feedback has gone quiet for 5 events: it no longer holds the clock back
        correlator.on_request(make_request(f"s{i}", ts_ms=T0 + 5 * HOUR_MS))
    assert correlator.watermark_ms == T0 + 5 * HOUR_MS


def test_an_input_not_seen_yet_holds_the_watermark_until_it_is_idle() -> None:
    correlator = OutcomeCorrelator(WorkflowRegistry(), idle_after=3)
    correlator.on_request(make_request("r1", ts_ms=T0))
    correlator.on_request(make_request("r2", ts_ms=T0 + 2 * HOUR_MS))
    assert correlator.watermark_ms == 0 and correlator.advance() == []
    correlator.on_request(make_request("r3", ts_ms=T0 + 2 * HOUR_MS + 1))  # third request: feedback is idle
    assert [o.request_id for o in correlator.advance()] == ["r1"]


@pytest.mark.parametrize(("kind", "value", "quality"), [
    ("thumbs", 1, 1.0), ("thumbs", -1, 0.0), ("rating", 1, 0.0), ("rating", 3, 0.5), ("nps", 7, 0.7),
    ("task_completed", 1, 1.0), ("delete", 1, 0.0), ("edit", 0.25, 0.75), ("dwell", 15, 0.5), ("dwell", 90, 1.0),
])
def test_feedback_quality_mapping(kind: str, value: float, quality: float) -> None:
    assert feedback_quality(FeedbackKind(kind), value) == pytest.approx(quality)


def test_explicit_feedback_outweighs_implicit() -> None:
    mixed = [make_feedback(kind="thumbs", value=1, feedback_id="a"), make_feedback(kind="dwell", value=0, feedback_id="b")]
    assert combined_quality(mixed) == pytest.approx(1.0 / 1.3)
    assert combined_quality([]) is None


def _fed(correlator: OutcomeCorrelator) -> OutcomeCorrelator:
    """``correlator`` after feedback before, after and without its request, and one request left open."""
    events = [make_request("r1", ts_ms=T0), make_feedback("r2", ts_ms=T0 + 1, kind="rating", value=4),
              make_request("r2", ts_ms=T0 + 2), make_feedback("r1", ts_ms=T0 + 3, kind="thumbs", value=0),
              make_request("r3", ts_ms=T0 + HOUR_MS)]
    for event in events:
        correlator.on_request(event) if hasattr(event, "route") else correlator.on_feedback(event)
    correlator.advance()
    return correlator


def test_restored_correlator_decides_exactly_as_the_original() -> None:
    registry = WorkflowRegistry()
    original, copy = _fed(OutcomeCorrelator(registry)), OutcomeCorrelator(registry)
    for request_id, state in original.drain_changes():  # through JSON, as the changelog carries it
        copy.load(request_id, None if state is None else orjson.loads(orjson.dumps(state)))
    copy.load_clock(orjson.loads(orjson.dumps(original.clock())))
    assert original.drain_changes() == []
    later = [make_feedback("r1", ts_ms=T0 + HOUR_MS + 5), make_feedback("r3", ts_ms=T0 + HOUR_MS + 6, kind="nps", value=9)]
    verdicts = [(c.on_feedback(later[0]), c.on_feedback(later[1])) for c in (original, copy)]
    assert verdicts[0] == verdicts[1] == (FeedbackVerdict.LATE, FeedbackVerdict.ACCEPTED)
    assert original.on_request(make_request("r1", ts_ms=T0)) is copy.on_request(make_request("r1", ts_ms=T0)) is None
    finals = [c.advance(T0 + 3 * HOUR_MS) for c in (original, copy)]
    assert finals[0] == finals[1] and [o.request_id for o in finals[0]] == ["r1", "r2", "r3"]


def test_events_older_than_a_window_behind_the_watermark_are_too_late(correlator: OutcomeCorrelator) -> None:
    correlator.on_feedback(make_feedback("r0", ts_ms=T0 + 2 * HOUR_MS))
    correlator.on_request(make_request("r1", ts_ms=T0 + 2 * HOUR_MS))
    assert correlator.is_too_late(T0 + HOUR_MS, "support-bot")
    assert not correlator.is_too_late(T0 + HOUR_MS + 1, "support-bot")


def test_the_encoded_state_log_is_the_json_of_drain_changes() -> None:
    # The stage writes drain_encoded() (orjson on the records); restores read it with load().
    registry = WorkflowRegistry()
    a, b = _fed(OutcomeCorrelator(registry)), _fed(OutcomeCorrelator(registry))
    plain = [(rid, None if st is None else orjson.loads(orjson.dumps(st))) for rid, st in a.drain_changes()]
    encoded = [(rid, None if raw is None else orjson.loads(raw)) for rid, raw in b.drain_encoded()]
    assert encoded == plain and len(plain) == 3 and b.drain_encoded() == []
