"""Signals the correlator handles, and the sliding-window detector that turns bursts of error log lines into one."""

from __future__ import annotations

import bisect
import hashlib
from typing import Any, NamedTuple

from processors.incidents.config import LOG_SIGNAL
from schemas.records import Severity


class Signal(NamedTuple):
    """One firing of one (entity, signal): an anomaly, or a log burst. Plain values, so it is JSON-able.

    ``source`` is ``anomaly`` or ``log``; a ``log`` item waiting in the queue
    is a single error line (``ident`` and ``signal`` empty, ``severity``
    ``critical`` or empty) until the burst detector has seen it.
    """

    ts_ms: int
    source: str
    entity_kind: str
    entity: str
    signal: str
    severity: str
    ident: str

    @property
    def member(self) -> str:
        """The dedup key: one member per entity × signal, e.g. ``route:gpt-large/error_rate``."""
        return f"{self.entity_kind}:{self.entity}/{self.signal}"

    @property
    def subject(self) -> str:
        """The entity with its kind, e.g. ``route:gpt-large``."""
        return f"{self.entity_kind}:{self.entity}"


class LogBurstDetector:
    """Counts error lines per entity over a sliding event-time window; ``count`` of them make a signal.

    Every line that keeps the window at or above ``count`` fires again (the
    correlator deduplicates); a line marked critical makes the burst critical.
    Isolated lines never fire.

    >>> d = LogBurstDetector(count=3, window_ms=10_000)
    >>> [d.observe(ts, "route", "a", False) is not None for ts in (0, 4_000, 15_000, 16_000, 17_000)]
    [False, False, False, False, True]
    >>> d.observe(18_000, "route", "a", True).severity
    'critical'
    """

    def __init__(self, count: int, window_ms: int) -> None:
        self.count, self.window_ms = count, window_ms
        # (entity_kind, entity) -> sorted (ts_ms, is_critical) of the lines in the window
        self._lines: dict[tuple[str, str], list[tuple[int, bool]]] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def observe(self, ts_ms: int, entity_kind: str, entity: str, is_critical: bool) -> Signal | None:
        """Add one error line; the burst's signal when the window holds ``count`` lines or more."""
        lines = self._lines.setdefault((entity_kind, entity), [])
        bisect.insort(lines, (ts_ms, is_critical))
        del lines[:bisect.bisect_right(lines, (lines[-1][0] - self.window_ms, True))]
        # a late line judges its own moment: the window is (ts - window, ts]
        low = bisect.bisect_right(lines, (ts_ms - self.window_ms, True))
        window = lines[low:bisect.bisect_right(lines, (ts_ms, True))]
        if len(window) < self.count:
            return None
        severity = Severity.CRITICAL if any(c for _, c in window) else Severity.WARNING
        return Signal(ts_ms, "log", entity_kind, entity, LOG_SIGNAL, str(severity),
                      burst_id(entity_kind, entity, ts_ms))

    def sweep(self, before_ms: int) -> None:
        """Forget entities whose newest line is at or before ``before_ms`` (bounded memory)."""
        stale = [key for key, lines in self._lines.items() if lines[-1][0] <= before_ms]
        for key in stale:
            del self._lines[key]

    def snapshot(self) -> list[Any]:
        """JSON-able state: ``[[kind, entity, [[ts, critical], ...]], ...]`` in a stable order."""
        return [[k, e, [list(line) for line in lines]] for (k, e), lines in sorted(self._lines.items())]

    def restore(self, state: list[Any]) -> None:
        """Replace the windows by a :meth:`snapshot`."""
        self._lines = {(k, e): [(int(ts), bool(c)) for ts, c in lines] for k, e, lines in state}


def burst_id(entity_kind: str, entity: str, ts_ms: int) -> str:
    """Stable id of a burst's firing (blake2b, so a replay gives the same id)."""
    key = f"{entity_kind}\x1f{entity}\x1f{LOG_SIGNAL}\x1f{ts_ms}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()
