"""Anomaly throttling: one record per series and cooldown, unless the severity rises."""

from __future__ import annotations

from schemas.records import Anomaly, Severity

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AnomalyThrottle:
    """Lets through the first anomaly of a series, then one per ``cooldown_ms`` of event time.

    A detector flags every request of a failing route; downstream (incidents,
    remediation, people) needs to know it started, got worse, or is still on —
    not a thousand times a second. A rise in severity always passes.

    >>> from tests.factories import make_anomaly
    >>> t = AnomalyThrottle(cooldown_ms=10_000)
    >>> [t.admit(make_anomaly(ts_ms=ts, severity=s)) for ts, s in
    ...  [(0, "warning"), (1_000, "warning"), (2_000, "critical"), (9_000, "critical"), (12_000, "warning")]]
    [True, False, True, False, True]
    """

    def __init__(self, cooldown_ms: int = 30_000, max_series: int = 1_000_000) -> None:
        self._cooldown_ms, self._max_series = cooldown_ms, max_series
        self._last: dict[tuple[str, str, str], tuple[int, int]] = {}

    def admit(self, anomaly: Anomaly) -> bool:
        """Whether to publish ``anomaly`` (and remember that it was)."""
        key = (anomaly.entity, anomaly.signal, str(anomaly.kind))
        rank = _RANK[anomaly.severity]
        last = self._last.get(key)
        if last is not None:
            last_ts, last_rank = last
            if rank <= last_rank and anomaly.ts_ms - last_ts < self._cooldown_ms:
                return False
        if last is None and len(self._last) >= self._max_series:
            del self._last[next(iter(self._last))]
        self._last[key] = (anomaly.ts_ms, rank)
        return True

    def filter(self, anomalies: list[Anomaly]) -> list[Anomaly]:
        return [a for a in anomalies if self.admit(a)]
