"""Named scores (feedback kind ``score``): declared per workflow, checked, scaled into the reward's quality."""

from __future__ import annotations

import orjson

from processors.correlation import OutcomeCorrelator, combined_quality
from processors.scores import check_score, score_quality
from processors.workflows import WorkflowRegistry
from schemas.records import FeedbackEvent, FeedbackKind, Outcome, ScoreSpec
from schemas.serde import json_codec
from tests.factories import make_feedback, make_request, make_workflow
from tests.unit.test_stages import T0, decode, env, msg
from streams.stages import CorrelateStage, WorkflowStage

JUDGE = ScoreSpec("faithfulness-judge", low=0.0, high=10.0, weight=2.0)
TOXICITY = ScoreSpec("toxicity", is_higher_better=False, weight=0.0)


def score(value: float, name: str | None = "faithfulness-judge", **kw: object) -> FeedbackEvent:
    return make_feedback("r1", ts_ms=T0 + 10, kind="score", value=value, name=name, **kw)


def test_a_score_feedback_round_trips_and_old_payloads_still_decode() -> None:
    codec = json_codec(FeedbackEvent)
    assert codec.decode(codec.encode(score(7.0))) == score(7.0)
    old = orjson.dumps({"feedback_id": "f", "request_id": "r", "ts_ms": 1, "kind": "thumbs", "value": 1.0})
    assert codec.decode(old).name is None


def test_score_quality_scales_over_the_declared_range_and_clips() -> None:
    assert score_quality(JUDGE, 7.5) == 0.75
    assert score_quality(JUDGE, 12.0) == 1.0
    assert score_quality(TOXICITY, 0.9) == 0.09999999999999998


def test_scores_weigh_by_their_spec_and_undeclared_ones_count_for_nothing() -> None:
    thumbs_down = make_feedback("r1", kind="thumbs", value=0, feedback_id="t")
    assert combined_quality([thumbs_down, score(9.0)], {JUDGE.name: JUDGE}) == (0.0 + 2.0 * 0.9) / 3.0
    assert combined_quality([thumbs_down, score(9.0)], {}) == 0.0
    assert combined_quality([score(9.0)], {}) is None
    assert combined_quality([score(0.9, name="toxicity")], {"toxicity": TOXICITY}) is None  # weight 0: recorded only


def test_check_score_refuses_a_missing_name_an_undeclared_name_and_out_of_range() -> None:
    wf = make_workflow(scores=(JUDGE,))
    assert check_score(make_feedback(kind="thumbs"), wf) is None
    assert check_score(score(5.0), wf) is None
    assert check_score(score(5.0, name=None), wf)[0] == "missing_name"  # type: ignore[index]
    assert check_score(score(5.0, name="other"), wf)[0] == "undeclared_score"  # type: ignore[index]
    assert check_score(score(10.5), wf)[0] == "out_of_range"  # type: ignore[index]
    assert check_score(score(10.5), None) is None  # unknown workflow: judged when the outcome is computed


def test_the_correlator_folds_a_declared_score_into_the_reward() -> None:
    registry = WorkflowRegistry()
    registry.update(make_workflow(scores=(JUDGE,)))
    correlator = OutcomeCorrelator(registry)
    correlator.on_request(make_request("r1", ts_ms=T0))
    correlator.on_feedback(score(2.0))
    (final,) = correlator.advance(T0 + 3_600_000)
    assert final.quality == 0.2 and final.reward_quality == 0.2


def test_the_correlate_stage_dead_letters_bad_scores_with_their_reason() -> None:
    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow(scores=(JUDGE,)))])
    stage = CorrelateStage(e)
    out = stage.handle([
        msg("p.requests", make_request("r1", ts_ms=T0), 0),
        msg("p.feedback", score(8.0, workflow="support-bot", feedback_id="ok"), 0),
        msg("p.feedback", score(80.0, workflow="support-bot", feedback_id="big"), 1),
        msg("p.feedback", score(8.0, name="made-up", workflow="support-bot", feedback_id="nope"), 2),
        msg("p.requests", make_request("r9", ts_ms=T0 + 3_600_000), 1),
        msg("p.feedback", make_feedback("r9", ts_ms=T0 + 3_600_001, feedback_id="clock"), 3),  # moves the watermark
    ])
    reasons = [orjson.loads(o.value)["reason"] for o in out if o.topic == "p.dlq"]
    assert reasons == ["out_of_range", "undeclared_score"]
    final = [decode(o, Outcome) for o in out if o.topic == "p.outcomes" and decode(o, Outcome).is_final]
    assert [(o.request_id, o.quality, o.feedback_count) for o in final] == [("r1", 0.8, 1)]
    assert FeedbackKind("score") is FeedbackKind.SCORE
