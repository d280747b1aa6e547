"""Named scores (feedback of kind ``score``): checking them against their workflow and scaling them to quality.

A workflow declares the scores it accepts (``WorkflowDefinition.scores``): a
name, a range and a weight. A score enters a request's quality like any other
feedback: its value is scaled to [0, 1] over the declared range (flipped when
lower is better) and averaged with the other feedback by weight (thumbs and
ratings weigh 1.0). A score the request's workflow does not declare counts
for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.records import FeedbackEvent, FeedbackKind, ScoreSpec, WorkflowDefinition


def scores_of(definition: WorkflowDefinition | None) -> Mapping[str, ScoreSpec]:
    """The scores a workflow declares, by name (none for an unknown workflow)."""
    return {} if definition is None else {spec.name: spec for spec in definition.scores}


def score_quality(spec: ScoreSpec, value: float) -> float:
    """A score's value scaled to quality in [0, 1] over its declared range.

    >>> score_quality(ScoreSpec("judge", low=1.0, high=5.0), 4.0)
    0.75
    >>> score_quality(ScoreSpec("toxicity", is_higher_better=False), 0.2)
    0.8
    """
    span = spec.high - spec.low
    scaled = 1.0 if span <= 0 else (value - spec.low) / span
    scaled = 0.0 if scaled < 0.0 else 1.0 if scaled > 1.0 else scaled
    return scaled if spec.is_higher_better else 1.0 - scaled


def check_score(feedback: FeedbackEvent, definition: WorkflowDefinition | None) -> tuple[str, str] | None:
    """Why a feedback cannot be accepted, as (reason, error); None when it can.

    Only ``score`` feedback is checked. Without a known workflow (``feedback.workflow``
    unset or not yet defined) the name is checked when the outcome is computed instead:
    an undeclared score then counts for nothing.

    >>> from schemas.records import RouteSpec, PrivacyLevel
    >>> wf = WorkflowDefinition("qa", "1", 0, (), scores=(ScoreSpec("judge", 0.0, 10.0),))
    >>> fb = FeedbackEvent("f1", "r1", 0, FeedbackKind.SCORE, 11.0, "qa", "judge")
    >>> check_score(fb, wf)
    ('out_of_range', 'score judge=11.0 is outside its declared range [0.0, 10.0]')
    """
    if feedback.kind is not FeedbackKind.SCORE:
        return None
    if not feedback.name:
        return "missing_name", "feedback of kind score needs a name (the score's name, e.g. faithfulness-judge)"
    if definition is None:
        return None
    spec = scores_of(definition).get(feedback.name)
    if spec is None:
        declared = ", ".join(sorted(scores_of(definition))) or "none"
        return ("undeclared_score", f"workflow {definition.workflow!r} declares no score {feedback.name!r} "
                f"(declared: {declared})")
    if not spec.low <= feedback.value <= spec.high:
        return ("out_of_range", f"score {spec.name}={feedback.value} is outside its declared range "
                f"[{spec.low}, {spec.high}]")
    return None
