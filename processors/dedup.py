"""Event-time deduplication: each key is admitted once within a horizon."""

from __future__ import annotations

from collections import OrderedDict
from enum import StrEnum


class Admission(StrEnum):
    """What the deduplicator says of one event."""

    NEW = "new"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


class Deduplicator:
    """Remembers the keys seen in the last ``horizon_ms`` of event time.

    Memory is bounded twice: by event time (keys older than the newest event
    minus the horizon are forgotten) and by ``max_keys`` (oldest first), so a
    burst of unique keys cannot exhaust the worker.

    An event older than the horizon cannot be checked any more, so it is
    reported ``TOO_LATE`` rather than silently admitted twice.

    >>> d = Deduplicator(horizon_ms=1_000)
    >>> [str(d.admit(k, ts)) for k, ts in [("r1", 0), ("r1", 10), ("r2", 20)]]
    ['new', 'duplicate', 'new']
    >>> str(d.admit("r3", ts_ms=5_000))   # r1 and r2 fall out of the horizon
    'new'
    >>> str(d.admit("r1", ts_ms=10)), len(d)
    ('too_late', 1)
    """

    def __init__(self, horizon_ms: int = 3_600_000, max_keys: int = 2_000_000) -> None:
        if horizon_ms <= 0 or max_keys <= 0:
            raise ValueError("horizon_ms and max_keys must be positive")
        self._horizon_ms, self._max_keys = horizon_ms, max_keys
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._newest_ms = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def admit(self, key: str, ts_ms: int) -> Admission:
        """``NEW`` the first time ``key`` is seen within the horizon (and remember it)."""
        if key in self._seen:
            return Admission.DUPLICATE
        if ts_ms < self._newest_ms - self._horizon_ms:
            return Admission.TOO_LATE
        self._seen[key] = ts_ms
        if ts_ms > self._newest_ms:
            self._newest_ms = ts_ms
        self._evict()
        return Admission.NEW

    def _evict(self) -> None:
        # Insertion order approximates event-time order; out-of-order events
        # only delay eviction, they never make a live key disappear early.
        cutoff = self._newest_ms - self._horizon_ms
        seen = self._seen
        while seen:
            key, ts_ms = next(iter(seen.items()))
            if ts_ms >= cutoff and len(seen) <= self._max_keys:
                break
            seen.popitem(last=False)

    def snapshot(self) -> dict[str, object]:
        """Plain, JSON-ready state (for a changelog-backed checkpoint)."""
        return {"horizon_ms": self._horizon_ms, "newest_ms": self._newest_ms, "seen": list(self._seen.items())}

    @classmethod
    def restore(cls, state: dict[str, object], max_keys: int = 2_000_000) -> "Deduplicator":
        """The inverse of ``snapshot``."""
        dedup = cls(int(state["horizon_ms"]), max_keys)  # type: ignore[call-overload]
        dedup._newest_ms = int(state["newest_ms"])  # type: ignore[call-overload]
        for key, ts_ms in state["seen"]:  # type: ignore[attr-defined]
            dedup._seen[str(key)] = int(ts_ms)
        return dedup
