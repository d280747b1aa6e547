"""Outcomes: each request joined with its feedback, in event time.

A request yields a provisional outcome at once; its final outcome comes when
the workflow's feedback window (default 1 h) closes, as measured by the
watermark (the newest event time seen). Feedback may come before its request,
twice, late or never; it is counted once, and feedback for a request whose
window has closed is reported ``LATE``, never folded into a final outcome
that was already emitted.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable, Mapping

import orjson

from processors.reward import reward
from processors.scores import score_quality, scores_of
from processors.workflows import WorkflowRegistry
from schemas.records import FeedbackEvent, FeedbackKind, Outcome, RequestEvent, ScoreSpec, Status
from schemas.serde import json_codec

_REQUEST = json_codec(RequestEvent)
_FEEDBACK = json_codec(FeedbackEvent)

#: Quality assumed for the reward while no feedback says otherwise; ``Outcome.quality`` stays None.
NEUTRAL_QUALITY = 0.5

# Explicit feedback speaks louder than implicit signals.
_KIND_WEIGHT = {
    FeedbackKind.THUMBS: 1.0, FeedbackKind.RATING: 1.0, FeedbackKind.NPS: 1.0,
    FeedbackKind.TASK_COMPLETED: 0.7, FeedbackKind.DELETE: 0.7,
    FeedbackKind.EDIT: 0.4, FeedbackKind.DWELL: 0.3, FeedbackKind.SCORE: 0.0,  # a score weighs what its spec says
}


def feedback_quality(kind: FeedbackKind, value: float) -> float:
    """One feedback's quality estimate in [0, 1].

    thumbs: >0 up, else down · rating: 1–5 stars · nps: 0–10 · task_completed: 1/0 ·
    delete: always 0 · edit: fraction of the answer edited (0–1) · dwell: seconds read
    (30 s or more counts as fully read).

    >>> feedback_quality(FeedbackKind.RATING, 4), feedback_quality(FeedbackKind.EDIT, 0.5)
    (0.75, 0.5)
    """
    if kind is FeedbackKind.THUMBS:
        return 1.0 if value > 0 else 0.0
    if kind is FeedbackKind.RATING:
        return _clip((value - 1.0) / 4.0)
    if kind is FeedbackKind.NPS:
        return _clip(value / 10.0)
    if kind is FeedbackKind.TASK_COMPLETED:
        return 1.0 if value > 0 else 0.0
    if kind is FeedbackKind.DELETE:
        return 0.0
    if kind is FeedbackKind.EDIT:
        return _clip(1.0 - value)
    if kind is FeedbackKind.SCORE:
        return _clip(value)  # without its declared range (see ``combined_quality``), a score is read as 0–1
    return _clip(value / 30.0)  # dwell


def combined_quality(feedback: Iterable[FeedbackEvent], scores: Mapping[str, ScoreSpec] | None = None) -> float | None:
    """Weighted mean of the feedback's quality estimates; None without feedback that counts.

    Named scores count by their declared weight over their declared range; a
    score ``scores`` does not declare counts for nothing.

    >>> from schemas.records import ScoreSpec
    >>> judge = ScoreSpec("judge", low=0.0, high=10.0, weight=1.0)
    >>> combined_quality([FeedbackEvent("f1", "r1", 0, FeedbackKind.THUMBS, 1.0),
    ...                   FeedbackEvent("f2", "r1", 0, FeedbackKind.SCORE, 5.0, name="judge")], {"judge": judge})
    0.75
    """
    total = weight = 0.0
    for item in feedback:
        if item.kind is FeedbackKind.SCORE:
            spec = (scores or {}).get(item.name or "")
            if spec is None or spec.weight <= 0:
                continue
            total += spec.weight * score_quality(spec, item.value)
            weight += spec.weight
            continue
        w = _KIND_WEIGHT[item.kind]
        total += w * feedback_quality(item.kind, item.value)
        weight += w
    return total / weight if weight else None


#: Which ``Outcome`` field carries the newest feedback of each kind (satisfaction KPIs read them).
_OUTCOME_FIELD = {
    FeedbackKind.THUMBS: "thumbs", FeedbackKind.RATING: "rating", FeedbackKind.NPS: "nps",
    FeedbackKind.TASK_COMPLETED: "task_completed", FeedbackKind.EDIT: "edited", FeedbackKind.DELETE: "deleted",
    FeedbackKind.DWELL: "dwell_s",
}


def feedback_fields(feedback: Iterable[FeedbackEvent]) -> dict[str, float]:
    """The newest value of each kind of feedback, by ``Outcome`` field (thumbs 1/0, delete 1).

    >>> from tests.factories import make_feedback
    >>> feedback_fields([make_feedback("r", ts_ms=1, kind="thumbs", value=-1), make_feedback("r", ts_ms=2, kind="delete", value=0)])
    {'thumbs': 0.0, 'deleted': 1.0}
    """
    fields: dict[str, tuple[int, float]] = {}
    for item in feedback:
        name = _OUTCOME_FIELD.get(item.kind)
        if name is None or (name in fields and fields[name][0] > item.ts_ms):
            continue
        value = float(item.value)
        if item.kind is FeedbackKind.DELETE:
            value = 1.0
        elif item.kind in (FeedbackKind.THUMBS, FeedbackKind.TASK_COMPLETED):
            value = 1.0 if item.value > 0 else 0.0
        fields[name] = (item.ts_ms, value)
    return {name: value for name, (_ts, value) in fields.items()}


class FeedbackVerdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(slots=True)
class _Pending:
    request: RequestEvent | None = None
    feedback: dict[str, FeedbackEvent] = field(default_factory=dict)
    deadline_ms: int = 0


class OutcomeCorrelator:
    """Joins requests and feedback of one partition into provisional and final outcomes.

    >>> from tests.factories import make_request, make_feedback
    >>> c = OutcomeCorrelator(WorkflowRegistry())
    >>> c.on_request(make_request("r1", ts_ms=0)).is_final
    False
    >>> str(c.on_feedback(make_feedback("r1", ts_ms=1_000, kind="thumbs", value=1)))
    'accepted'
    >>> [(o.request_id, o.is_final, o.quality) for o in c.advance(3_600_000)]
    [('r1', True, 1.0)]
    >>> str(c.on_feedback(make_feedback("r1", ts_ms=3_600_500, kind="rating", value=1)))
    'late'
    """

    def __init__(self, registry: WorkflowRegistry, max_closed: int = 500_000, idle_after: int = 10_000) -> None:
        self._registry = registry
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._closed: dict[str, int] = {}  # request_id -> deadline, insertion-ordered
        self._max_closed = max_closed
        self._dirty: set[str] = set()  # request ids whose durable state changed since drain_changes()
        # The watermark follows the slower of the two inputs (one topic may be read ahead of the
        # other, e.g. while catching up), unless that input has been idle for `idle_after` events
        # of the other: a workflow without feedback must still get its final outcomes.
        self._newest = {"request": 0, "feedback": 0}
        self._quiet = {"request": 0, "feedback": 0}
        self._idle_after = idle_after
        self.watermark_ms = 0

    def __len__(self) -> int:
        return len(self._pending)

    def is_too_late(self, ts_ms: int, workflow: str | None) -> bool:
        """Whether an event this old can only belong to a window that has closed (refuse it, do not guess)."""
        return ts_ms + int(self._registry.window_s(workflow or "") * 1000) <= self.watermark_ms

    def on_request(self, request: RequestEvent) -> Outcome | None:
        """The request's provisional outcome; None if it was already seen."""
        self._see(request.ts_ms, "request")
        pending = self._pending.get(request.request_id)
        if request.request_id in self._closed or (pending is not None and pending.request is not None):
            return None
        if pending is None:
            pending = self._pending[request.request_id] = _Pending()
        pending.request = request
        self._dirty.add(request.request_id)
        window_ms = int(self._registry.window_s(request.workflow) * 1000)
        pending.deadline_ms = request.ts_ms + window_ms
        heapq.heappush(self._deadlines, (pending.deadline_ms, request.request_id))
        return self._outcome(pending, request, is_final=False, ts_ms=request.ts_ms)

    def on_feedback(self, feedback: FeedbackEvent) -> FeedbackVerdict:
        """Attach feedback to its request (which may not have arrived yet)."""
        self._see(feedback.ts_ms, "feedback")
        if feedback.request_id in self._closed:
            return FeedbackVerdict.LATE
        pending = self._pending.get(feedback.request_id)
        if pending is None:
            # Feedback before its request: wait for it, but not forever.
            window_ms = int(self._registry.window_s(feedback.workflow or "") * 1000)
            pending = self._pending[feedback.request_id] = _Pending(deadline_ms=feedback.ts_ms + window_ms)
            heapq.heappush(self._deadlines, (pending.deadline_ms, feedback.request_id))
        if pending.request is not None and pending.deadline_ms <= self.watermark_ms:
            # The window has closed in event time, even if advance() has not run yet:
            # the verdict depends on event order only, never on batch boundaries.
            return FeedbackVerdict.LATE
        if feedback.feedback_id in pending.feedback:
            return FeedbackVerdict.DUPLICATE
        pending.feedback[feedback.feedback_id] = feedback
        self._dirty.add(feedback.request_id)
        return FeedbackVerdict.ACCEPTED

    def advance(self, watermark_ms: int | None = None) -> list[Outcome]:
        """Final outcomes of every window that closed by ``watermark_ms`` (default: newest event)."""
        if watermark_ms is not None:
            self._see(watermark_ms)
        finals: list[Outcome] = []
        while self._deadlines and self._deadlines[0][0] <= self.watermark_ms:
            deadline_ms, request_id = heapq.heappop(self._deadlines)
            pending = self._pending.get(request_id)
            if pending is None or pending.deadline_ms != deadline_ms:
                continue  # superseded entry (the request arrived after its feedback)
            del self._pending[request_id]
            self._close(request_id, deadline_ms)
            if pending.request is not None:
                finals.append(self._outcome(pending, pending.request, is_final=True, ts_ms=deadline_ms))
        return finals

    def _see(self, ts_ms: int, source: str | None = None) -> None:
        if source is not None:
            newest, quiet = self._newest, self._quiet
            if ts_ms > newest[source]:
                newest[source] = ts_ms
            for name in quiet:
                quiet[name] = 0 if name == source else quiet[name] + 1
            # An input not seen yet holds the clock too (its first events may still be on their way).
            live = [newest[n] for n in newest if quiet[n] < self._idle_after]
            ts_ms = min(live) if live else max(newest.values())
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms

    def follow_idle(self, idle: frozenset[str], idle_for_ms: int = 0) -> bool:
        """Let the clock move past inputs that have been idle (wall clock, judged by the caller).

        An idle input no longer holds the clock back; when every input is idle, the clock
        moves on from the newest event by ``idle_for_ms`` (how long they have been idle), so
        a quiet workflow still closes its windows. Returns whether the clock moved.

        >>> from tests.factories import make_request
        >>> c = OutcomeCorrelator(WorkflowRegistry())
        >>> _ = c.on_request(make_request("r1", ts_ms=1_000))
        >>> c.watermark_ms  # feedback has not been seen: it holds the clock
        0
        >>> c.follow_idle(frozenset({"feedback"})), c.watermark_ms
        (True, 1000)
        >>> c.follow_idle(frozenset({"request", "feedback"}), idle_for_ms=3_600_000), c.watermark_ms
        (True, 3601000)
        >>> [o.request_id for o in c.advance()]
        ['r1']
        """
        newest = max(self._newest.values())
        if not newest:
            return False
        live = [self._newest[n] for n in self._newest if n not in idle and self._quiet[n] < self._idle_after]
        ts_ms = min(live) if live else newest + max(0, idle_for_ms)
        if ts_ms <= self.watermark_ms:
            return False
        self.watermark_ms = ts_ms
        return True

    def clock(self) -> dict[str, Any]:
        """The event-time clock's state (part of the durable state)."""
        return {"watermark_ms": self.watermark_ms, "newest": dict(self._newest), "quiet": dict(self._quiet)}

    def load_clock(self, state: dict[str, Any]) -> None:
        self.watermark_ms = int(state["watermark_ms"])
        self._newest.update({k: int(v) for k, v in state["newest"].items()})
        self._quiet.update({k: int(v) for k, v in state["quiet"].items()})

    def _close(self, request_id: str, deadline_ms: int) -> None:
        self._closed[request_id] = deadline_ms
        self._dirty.add(request_id)
        if len(self._closed) > self._max_closed:
            evicted = next(iter(self._closed))
            del self._closed[evicted]
            self._dirty.add(evicted)

    # ------------------------------------------------------------ durable state

    def drain_changes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """The state of every request that changed since the last call (None: forget it).

        Together with ``clock()`` this is all a restart needs: ``load`` each
        pair into a fresh correlator and it decides exactly as this one would.
        """
        changes = [(request_id, self._state_of(request_id)) for request_id in sorted(self._dirty)]
        self._dirty.clear()
        return changes

    def drain_encoded(self) -> list[tuple[str, bytes | None]]:
        """``drain_changes`` already encoded as the changelog's JSON (what ``load`` reads back).

        orjson writes the frozen records directly (the same JSON as their codec's
        ``to_dict``), about 3x cheaper than building the dicts first: this state log
        is written for every request and feedback, so it is on the hot path.
        """
        out = [(request_id, None if (state := self._records_of(request_id)) is None else orjson.dumps(state))
               for request_id in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def load(self, request_id: str, state: dict[str, Any] | None) -> None:
        """Restore one request's state as ``drain_changes`` gave it (the newest wins)."""
        self._pending.pop(request_id, None)
        self._closed.pop(request_id, None)
        if state is None:
            return
        if "closed_ms" in state:
            self._closed[request_id] = int(state["closed_ms"])
            return
        request = None if state["request"] is None else _REQUEST.from_dict(state["request"])
        feedback = {f["feedback_id"]: _FEEDBACK.from_dict(f) for f in state["feedback"]}
        pending = self._pending[request_id] = _Pending(request, feedback, int(state["deadline_ms"]))
        heapq.heappush(self._deadlines, (pending.deadline_ms, request_id))

    def _records_of(self, request_id: str) -> dict[str, Any] | None:
        """One request's durable state, its request and feedback still as records (None: forget it)."""
        pending = self._pending.get(request_id)
        if pending is not None:
            return {"request": pending.request, "feedback": list(pending.feedback.values()),
                    "deadline_ms": pending.deadline_ms}
        closed_ms = self._closed.get(request_id)
        return None if closed_ms is None else {"closed_ms": closed_ms}

    def _state_of(self, request_id: str) -> dict[str, Any] | None:
        state = self._records_of(request_id)
        if state is None or "closed_ms" in state:
            return state
        request = state["request"]
        return {"request": None if request is None else _REQUEST.to_dict(request),
                "feedback": [_FEEDBACK.to_dict(f) for f in state["feedback"]], "deadline_ms": state["deadline_ms"]}

    def _outcome(self, pending: _Pending, request: RequestEvent, *, is_final: bool, ts_ms: int) -> Outcome:
        quality = combined_quality(pending.feedback.values(), scores_of(self._registry.get(request.workflow)))
        is_error = request.status is not Status.OK
        parts = reward(
            NEUTRAL_QUALITY if quality is None else quality,
            request.latency_ms, request.cost_usd, is_error,
            self._registry.objective(request.workflow),
        )
        return Outcome(
            request_id=request.request_id, ts_ms=ts_ms, request_ts_ms=request.ts_ms,
            workflow=request.workflow, workflow_version=request.workflow_version, route=request.route,
            segment=self._registry.segment(request.workflow, request.context), status=request.status,
            latency_ms=request.latency_ms, cost_usd=request.cost_usd,
            reward=parts.total, reward_quality=parts.quality, reward_latency=parts.latency,
            reward_cost=parts.cost, reward_error=parts.error, is_final=is_final,
            feedback_count=len(pending.feedback), quality=quality, variant=request.variant,
            tenant=request.context.tenant, task=request.context.task, **feedback_fields(pending.feedback.values()),
        )


def _clip(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
