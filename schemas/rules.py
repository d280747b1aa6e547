"""Field-level value rules that the Avro types cannot say: ranges and non-empty ids.

Rules are keyed by field name because loopwise names carry their meaning
(``*_ms`` is a time or a duration, ``*_usd`` money, ``probability`` a share),
so one name means one rule in every record. ``tests/unit/test_validation``
pins each rule to a field of ``schemas.records``.
"""

from __future__ import annotations

from typing import Final, Mapping

# Ids and topic keys: an empty one cannot be joined, keyed or deduplicated.
NON_EMPTY: Final[frozenset[str]] = frozenset({
    "request_id", "feedback_id", "job_id", "anomaly_id", "incident_id", "command_id",
    "insight_id", "workflow", "source", "service", "entity", "experiment", "target",
})

# Times, durations, money, counts and sizes: a negative one is impossible.
NON_NEGATIVE: Final[frozenset[str]] = frozenset({
    "ts_ms", "request_ts_ms", "started_ms", "resolved_ms", "window_start_ms", "window_end_ms",
    "expires_ts_ms", "deadline_ts_ms", "decided_ts_ms",
    "latency_ms", "prior_latency_ms", "latency_ref_ms",
    "cost_usd", "estimated_cost_usd", "cost_ref_usd", "cost_per_1k_in_usd", "cost_per_1k_out_usd",
    "budget_usd_per_hour",
    "estimated_duration_s", "max_duration_s", "step_duration_s", "feedback_window_s",
    "tokens_in", "tokens_out", "priority", "partition", "offset", "n", "feedback_count",
    "anomaly_count", "policy_version", "step", "capacity_rps", "reward_std",
})

# Probabilities, shares and fractions: must lie in [0, 1].
UNIT_INTERVAL: Final[frozenset[str]] = frozenset({
    "probability", "prior_quality", "min_share", "max_regression", "traffic_share",
    "allocation", "p_best", "srm_p_value",
})

# Arrays whose every element is a share in [0, 1] (RolloutPlan.steps).
UNIT_INTERVAL_ITEMS: Final[frozenset[str]] = frozenset({"steps"})

# The value of a feedback event, by its kind (``FeedbackEvent.value``): a value outside its kind's
# range is dead-lettered (``out_of_range``), never clipped, so a 0.9 sent on a 1-5 scale is seen.
# Bounds are inclusive. ``score`` (a named score) has the range its workflow declares.
FEEDBACK_VALUE_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "thumbs": (-1.0, 1.0),         # > 0 up, else down (1 / 0 or 1 / -1)
    "rating": (1.0, 5.0),          # stars
    "nps": (0.0, 10.0),            # net promoter score
    "task_completed": (0.0, 1.0),  # > 0 completed
    "delete": (0.0, 1.0),          # the answer was deleted (the value is not used)
    "edit": (0.0, 1.0),            # fraction of the answer edited
    "dwell": (0.0, 86_400.0),      # seconds read (30 s or more counts as fully read)
}
