"""Per-entity request windows: the robust aggregates (median latency, cost per request) the bank's detectors judge.

One request says little about a route: per-request latency is heavy-tailed
(a lognormal body, and every timeout is a value of ``timeout_ms``), so a
detector fed single requests pages on the tail of a healthy route. A window
of requests says how the route behaves: its median latency and its cost per
request move only when most requests move.

Windows are closed by count and event-time span, not by event-time
boundaries, because request events arrive out of order (a request is stamped
when it completes, a timeout up to ``timeout_ms`` after the requests it
arrived with): a window closes when it holds at least ``min_ok`` successful
requests and spans ``window_ms`` of event time, or holds ``max_requests``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """Aggregates of one closed window of an entity's requests (NaN when no request succeeded)."""

    start_ms: int
    end_ms: int
    requests: int
    latency_ms: float  # median latency of the successful requests
    cost_usd: float  # mean cost of a successful request


class RequestWindow:
    """The open window of one entity: successful latencies and costs, request count, event-time span.

    Args:
        window_ms: event time a window spans at least.
        min_ok: successful requests a window holds at least (so its median is a median).
        max_requests: a window holding this many requests closes whatever its span.

    >>> w = RequestWindow(window_ms=1_000, min_ok=3)
    >>> [w.add(ts, 100.0 + ts % 7, 0.01, True) for ts in (0, 400, 800)]
    [None, None, None]
    >>> s = w.add(1_200, 5_000.0, 0.0, False)  # a timeout: counted, not a latency
    >>> (s.start_ms, s.end_ms, s.requests, s.latency_ms)
    (0, 800, 4, 101.0)
    """

    __slots__ = ("window_ms", "min_ok", "max_requests", "_latencies", "_cost_usd", "_count", "_start_ms",
                 "_end_ms")

    def __init__(self, window_ms: int = 10_000, min_ok: int = 20, max_requests: int = 512) -> None:
        self.window_ms, self.min_ok, self.max_requests = window_ms, min_ok, max_requests
        self._latencies = array("d")
        self._cost_usd = 0.0
        self._count = 0
        self._start_ms: int | None = None
        self._end_ms: int | None = None  # latest stamp of a successful request

    def add(self, ts_ms: int, latency_ms: float, cost_usd: float, is_ok: bool) -> WindowSummary | None:
        """Add one request; the summary of the window when this request closes it."""
        # The earliest stamp, not the first: a timeout stamped far ahead may come first.
        self._start_ms = ts_ms if self._start_ms is None else min(self._start_ms, ts_ms)
        self._count += 1
        if is_ok and math.isfinite(latency_ms) and math.isfinite(cost_usd):
            self._latencies.append(latency_ms)
            self._cost_usd += cost_usd
            self._end_ms = ts_ms if self._end_ms is None else max(self._end_ms, ts_ms)
        is_long = ts_ms - self._start_ms >= self.window_ms and len(self._latencies) >= self.min_ok
        if not is_long and self._count < self.max_requests:
            return None
        return self._close(ts_ms if self._end_ms is None else self._end_ms)

    def _close(self, end_ms: int) -> WindowSummary:
        assert self._start_ms is not None
        ok = len(self._latencies)
        latencies = sorted(self._latencies)
        median = math.nan if not ok else 0.5 * (latencies[(ok - 1) // 2] + latencies[ok // 2])
        summary = WindowSummary(self._start_ms, max(end_ms, self._start_ms), self._count, median,
                                self._cost_usd / ok if ok else math.nan)
        self._latencies, self._cost_usd, self._count = array("d"), 0.0, 0
        self._start_ms = self._end_ms = None
        return summary

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of the open window."""
        return {"window_ms": self.window_ms, "min_ok": self.min_ok, "max_requests": self.max_requests,
                "latencies": list(self._latencies), "cost_usd": self._cost_usd, "count": self._count,
                "start_ms": self._start_ms, "end_ms": self._end_ms}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RequestWindow:
        """Rebuild an open window from :meth:`snapshot`."""
        w = cls(int(state["window_ms"]), int(state["min_ok"]), int(state["max_requests"]))
        w._latencies = array("d", (float(v) for v in state["latencies"]))
        w._cost_usd, w._count = float(state["cost_usd"]), int(state["count"])
        w._start_ms = None if state["start_ms"] is None else int(state["start_ms"])
        w._end_ms = None if state["end_ms"] is None else int(state["end_ms"])
        return w


class MeanWindow:
    """The open window of one entity's quality scores (sparse and late: they come with final outcomes).

    Closes when it holds ``min_n`` values spanning ``window_ms`` of event time; its value is their mean.

    >>> w = MeanWindow(window_ms=1_000, min_n=3)
    >>> [w.add(ts, q) for ts, q in ((0, 0.8), (500, 0.9), (900, 0.7))]
    [None, None, None]
    >>> start, end, mean = w.add(1_100, 0.6)
    >>> start, end, round(mean, 3)
    (0, 1100, 0.75)
    """

    __slots__ = ("window_ms", "min_n", "_sum", "_n", "_start_ms")

    def __init__(self, window_ms: int = 60_000, min_n: int = 30) -> None:
        self.window_ms, self.min_n = window_ms, min_n
        self._sum, self._n = 0.0, 0
        self._start_ms: int | None = None

    def add(self, ts_ms: int, value: float) -> tuple[int, int, float] | None:
        """Add one value; (start, end, mean) of the window when this value closes it."""
        if not math.isfinite(value):
            return None
        self._start_ms = ts_ms if self._start_ms is None else min(self._start_ms, ts_ms)
        self._sum += value
        self._n += 1
        if self._n < self.min_n or ts_ms - self._start_ms < self.window_ms:
            return None
        out = (self._start_ms, ts_ms, self._sum / self._n)
        self._sum, self._n, self._start_ms = 0.0, 0, None
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of the open window."""
        return {"window_ms": self.window_ms, "min_n": self.min_n, "sum": self._sum, "n": self._n,
                "start_ms": self._start_ms}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> MeanWindow:
        """Rebuild an open window from :meth:`snapshot`."""
        w = cls(int(state["window_ms"]), int(state["min_n"]))
        w._sum, w._n = float(state["sum"]), int(state["n"])
        w._start_ms = None if state["start_ms"] is None else int(state["start_ms"])
        return w
