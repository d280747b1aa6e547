"""Grouping policy of the incident correlator: Alertmanager's timers plus dedup, inhibition and log-burst knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from schemas.records import Severity, SignalKind

# Labels a signal can be grouped by. ``root`` is topology-aware: a route is its
# own root; a workflow's root is one of its routes that is already misbehaving
# (else the workflow itself); see ``IncidentCorrelator``.
GROUP_LABELS = ("root", "entity", "entity_kind", "signal")

SEVERITY_RANK: Mapping[Severity, int] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

# Root-cause preference among entities that started close together: a route
# explains the workflows that use it, infrastructure explains workflows too.
KIND_RANK: Mapping[str, int] = {"route": 0, "metric_source": 1, "service": 1, "workflow": 2}

LOG_SIGNAL = "log_errors"


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """How signals become incidents. Defaults are Alertmanager's (30 s / 5 min / 4 h).

    Args:
        group_by: labels whose values form the group key, among ``GROUP_LABELS``.
        group_wait_ms: wait after a group opens before its first notification,
            so related signals arriving meanwhile ride along.
        group_interval_ms: minimum event time between two notifications of a
            group whose members or severity changed.
        repeat_interval_ms: re-notify a firing group that did not change.
        resolve_after_ms: a group resolves when none of its members fired for
            this long (the signals returned to normal).
        root_tolerance_ms: starts within this of the earliest one count as
            "close": among them a route wins the root-cause guess, and an
            unnotified workflow group that opened this little before its
            route's is absorbed into the route's group.
        forget_after_ms: how long a resolved member is remembered, so that a
            late signal from before the resolution does not reopen it.
        min_severity: anomalies below it are ignored (info does not page).
        kinds: anomaly kinds that count (drift is a slow shift, not an outage).
        outage_signals: a critical route member on one of these is an outage.
        inhibited_signals: workflow signals an outage of one of the workflow's
            routes absorbs into the outage's incident. ``error_rate`` is in by
            default: a dead route raises its workflows' error rates too.
        log_burst_count: error/critical log lines of one entity within
            ``log_burst_window_ms`` that make a ``log_errors`` signal.
        log_burst_window_ms: the sliding window of that count.
        max_ids_per_group: anomaly ids remembered per group to drop redelivered
            records exactly; past it, redeliveries may be counted twice.
    """

    group_by: tuple[str, ...] = ("root",)
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_interval_ms: int = 4 * 3_600_000
    resolve_after_ms: int = 300_000
    root_tolerance_ms: int = 60_000
    forget_after_ms: int = 3_600_000
    min_severity: Severity = Severity.WARNING
    kinds: frozenset[SignalKind] = field(default_factory=lambda: frozenset({SignalKind.ANOMALY}))
    outage_signals: frozenset[str] = frozenset({"error_rate", "availability"})
    inhibited_signals: frozenset[str] = frozenset({"latency_ms", "quality", "error_rate"})
    log_burst_count: int = 5
    log_burst_window_ms: int = 60_000
    max_ids_per_group: int = 1_000

    def __post_init__(self) -> None:
        unknown = [label for label in self.group_by if label not in GROUP_LABELS]
        if unknown or not self.group_by:
            raise ValueError(f"group_by must be a non-empty subset of {GROUP_LABELS}, got {self.group_by}")
        timers = (self.group_wait_ms, self.group_interval_ms, self.repeat_interval_ms,
                  self.resolve_after_ms, self.root_tolerance_ms, self.forget_after_ms,
                  self.log_burst_window_ms)
        if min(timers) < 0 or self.resolve_after_ms == 0:
            raise ValueError("timers must be >= 0 and resolve_after_ms > 0")
        if self.log_burst_count < 1 or self.max_ids_per_group < 0:
            raise ValueError("log_burst_count must be >= 1 and max_ids_per_group >= 0")

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The group key of a signal with these labels, e.g. ``root=route:gpt-large``.

        >>> GroupingConfig(group_by=("root", "signal")).group_key(
        ...     {"root": "route:a", "entity": "workflow:w", "entity_kind": "workflow", "signal": "latency_ms"})
        'root=route:a|signal=latency_ms'
        """
        return "|".join(f"{label}={labels[label]}" for label in self.group_by)
