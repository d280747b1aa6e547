"""One detector per (entity, signal): turns requests and metrics into ``Anomaly`` records, snapshot-able to JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

from models.window import LogQuantile
from processors.anomaly.detectors import VERSION, Direction, SeriesDetector
from processors.anomaly.windows import MeanWindow, RequestWindow
from processors.drift import DriftMonitor
from schemas.records import Anomaly, MetricEvent, Outcome, RequestEvent, Severity, SignalKind, Status

ERROR_RATE_ALPHA = 0.1  # ~ the last 20 requests: short enough to see an outage within seconds
# Only rises of these signals hurt anyone; a route getting faster is not an incident.
UPWARD_SIGNALS = frozenset({"latency_ms", "error_rate", "cost_usd"})
# One error moves the short-window rate by ERROR_RATE_ALPHA; a lone error must stay below z = 2.
MIN_SCALES = {"error_rate": 0.05, "quality": 0.02}
# Judged per closed window of requests, by entity kind (cost per request is a route's price).
WINDOWED_SIGNALS = {"route": ("latency_ms", "cost_usd"), "workflow": ("latency_ms",)}
# Also judged for slow degradation. Not cost per request: it follows the task mix the
# router sends, and the trend paged on such shifts of a steady route (bench/detection.py).
TREND_SIGNALS = frozenset({"latency_ms"})
# Warm-up is counted in values AND in event time: 60 requests of a busy route arrive in
# under a second, which is not a history (a cold start's first-second 429s would page).
MIN_WARM_SPAN_MS = 30_000
# Only falls of these signals hurt anyone.
DOWNWARD_SIGNALS = frozenset({"quality"})
# Quality comes with final outcomes (feedback, minutes late, for some requests only): judged per
# window of at least QUALITY_MIN_N scores over QUALITY_WINDOW_MS, after QUALITY_WARMUP windows.
QUALITY_WINDOW_MS, QUALITY_MIN_N, QUALITY_WARMUP = 60_000, 30, 20


@dataclass(frozen=True, slots=True)
class SeverityPolicy:
    """Score thresholds; each is raised to the entity's own ``tau``-quantile of past scores plus a margin.

    So a noisy but steady entity, whose normal scores run high, needs a
    stronger deviation to warn than a quiet one (it does not page anyone).
    """

    info: float = 0.5
    warning: float = 0.75
    critical: float = 0.9
    tau: float = 0.995
    margin: float = 0.05

    def classify(self, score: float, score_quantile: float) -> Severity | None:
        """The severity of ``score`` for an entity whose score quantile is ``score_quantile``."""
        adapt = min(score_quantile + self.margin, 0.99)
        if score >= max(self.critical, adapt + 0.05):
            return Severity.CRITICAL
        if score >= max(self.warning, adapt):
            return Severity.WARNING
        if score >= max(self.info, adapt - 0.05):
            return Severity.INFO
        return None


class _Series:
    """State of one (entity, signal): detector, score quantile, timing for the evidence window."""

    __slots__ = ("kind", "detector", "scores", "last_ts_ms", "dt_ms", "first_ts_ms")

    def __init__(self, kind: str, detector: SeriesDetector, scores: LogQuantile) -> None:
        self.kind, self.detector, self.scores = kind, detector, scores
        self.last_ts_ms: int | None = None
        self.first_ts_ms: int | None = None
        self.dt_ms = 0.0  # EW inter-arrival time, to state the window without storing timestamps


class DetectorBank:
    """Keeps one :class:`SeriesDetector` per (entity, signal) and emits ``Anomaly`` records.

    Args:
        window: values each detector keeps (memory grows with it: see ``bench/detectors.py``).
        warmup: values of a series before it may raise anything.
        policy: severity thresholds.
        drift: optional drift monitor fed with each series' robust residual; its
            records wait in :meth:`take_drift` (``observe_request`` includes them).
        request_window_ms: event time a window of an entity's requests spans
            (see :class:`~processors.anomaly.windows.RequestWindow`).
        window_warmup: windows of a route's or workflow's latency and cost before
            they may raise anything (48 of 10 s: 8 minutes, a full detector window).

    >>> bank = DetectorBank(warmup=20)
    >>> hits = [bank.observe("api", "service", "rps", 1000 * i, 100.0 + (i % 5))
    ...         for i in range(200)]
    >>> [h for h in hits if h]
    []
    >>> a = bank.observe("api", "service", "rps", 200_000, 900.0)
    >>> a.severity, a.signal, a.value
    (<Severity.CRITICAL: 'critical'>, 'rps', 900.0)
    """

    def __init__(self, window: int = 48, warmup: int = 60, policy: SeverityPolicy | None = None,
                 drift: DriftMonitor | None = None, request_window_ms: int = 10_000,
                 window_warmup: int = 48) -> None:
        self.window, self.warmup = window, warmup
        self.request_window_ms, self.window_warmup = request_window_ms, window_warmup
        self.policy = policy or SeverityPolicy()
        self.drift = drift
        self._series: dict[tuple[str, str], _Series] = {}
        self._error_rates: dict[str, float] = {}
        self._windows: dict[str, RequestWindow] = {}
        self._quality: dict[str, MeanWindow] = {}
        self._flagged: dict[str, None] = {}  # metric series whose last sample was anomalous
        self._drifts: list[Anomaly] = []

    @classmethod
    def for_requests(cls) -> "DetectorBank":
        """The bank of routes and workflows (with its drift monitor): one constructor for the
        ``correlate`` stage and the simulator's offline detection, so both run the same code."""
        return cls(drift=DriftMonitor())

    @classmethod
    def for_metrics(cls) -> "DetectorBank":
        """The bank of metric sources × names (the ``observe`` stage and offline detection)."""
        return cls()

    def __len__(self) -> int:
        return len(self._series)

    def observe(self, entity: str, entity_kind: str, signal: str, ts_ms: int,
                value: float) -> Anomaly | None:
        """Score ``value`` of one series at event time ``ts_ms``, then learn it."""
        return self._judge(self._get(entity, entity_kind, signal, self.warmup), entity, signal, ts_ms, value)

    def _judge(self, series: _Series, entity: str, signal: str, ts_ms: int, value: float,
               is_learning: bool = True, window_start_ms: int | None = None) -> Anomaly | None:
        """Score ``value`` (and learn it if ``is_learning``); the record if its severity calls for one.

        ``window_start_ms``: where the window whose aggregate ``value`` is began
        (the evidence); by default the span of the detector's history.
        """
        detector = series.detector
        scored = detector.step(value, ts_ms) if is_learning else detector.score(value, ts_ms)
        if is_learning:
            self._advance_clock(series, ts_ms)
        if series.first_ts_ms is None or ts_ms < series.first_ts_ms:
            series.first_ts_ms = ts_ms
        if not scored.is_warm or not math.isfinite(value) or ts_ms - series.first_ts_ms < MIN_WARM_SPAN_MS:
            return None
        quantile = series.scores.value
        if is_learning:
            series.scores.update(max(scored.score, 1e-6))
            if self.drift is not None:
                change = self.drift.observe(entity, series.kind, signal, ts_ms, scored.z)
                if change is not None:
                    self._drifts.append(change)
        severity = self.policy.classify(scored.score, quantile)
        if severity is None:
            return None
        if window_start_ms is None:
            window_start_ms = ts_ms - int(series.dt_ms * min(detector.seen, self.window))
        return Anomaly(
            anomaly_id=anomaly_id(entity, signal, ts_ms, detector.name),
            ts_ms=ts_ms, entity=entity, entity_kind=series.kind, signal=signal,
            kind=SignalKind.ANOMALY, score=round(scored.score, 6), severity=severity, value=value,
            expected_low=scored.expected_low, expected_high=scored.expected_high,
            window_start_ms=window_start_ms, window_end_ms=ts_ms,
            detector=detector.name, detector_version=VERSION)

    def observe_request(self, event: RequestEvent) -> list[Anomaly]:
        """Error rate, median latency and cost per request of the route; error rate and median latency of the workflow.

        The short-term error rate is scored at every request, so an outage
        shows within a few requests, but learned once per window (every request
        while warming up), so what it is compared with spans minutes, and a
        failing route stays anomalous until the failure has lasted that long.
        Latency and cost are judged per closed window: one slow or expensive
        request is not an incident (see :mod:`processors.anomaly.windows`).
        """
        is_ok = event.status == Status.OK
        found: list[Anomaly | None] = []
        for entity, kind in ((event.route, "route"), (event.workflow, "workflow")):
            key = f"{kind}:{entity}"
            summary = self._window(key).add(event.ts_ms, event.latency_ms, event.cost_usd, is_ok)
            errors = self._get(entity, kind, "error_rate", self.warmup)
            is_learning = summary is not None or errors.detector.seen < errors.detector.warmup
            found.append(self._judge(errors, entity, "error_rate", event.ts_ms,
                                     self._error_rate(key, 0.0 if is_ok else 1.0), is_learning))
            if summary is None:
                continue
            for signal, value in (("latency_ms", summary.latency_ms), ("cost_usd", summary.cost_usd)):
                if signal in WINDOWED_SIGNALS[kind]:
                    series = self._get(entity, kind, signal, self.window_warmup, signal in TREND_SIGNALS)
                    found.append(self._judge(series, entity, signal, summary.end_ms, value,
                                             window_start_ms=summary.start_ms))
        return [a for a in found if a is not None] + self.take_drift()

    def observe_outcome(self, outcome: Outcome) -> list[Anomaly]:
        """Quality of the route and the workflow, from final outcomes that carry one (mean per window).

        Quality is known only once feedback came in (the final outcome), for some
        requests, minutes late: a window's mean over many scores is what moves
        when a route gets worse, not one unhappy user.
        """
        if not outcome.is_final or outcome.quality is None or not outcome.route:
            return []
        found: list[Anomaly | None] = []
        for entity, kind in ((outcome.route, "route"), (outcome.workflow, "workflow")):
            key = f"{kind}:{entity}"
            window = self._quality.get(key)
            if window is None:
                window = self._quality[key] = MeanWindow(QUALITY_WINDOW_MS, QUALITY_MIN_N)
            closed = window.add(outcome.request_ts_ms, outcome.quality)
            if closed is not None:
                start_ms, end_ms, mean = closed
                series = self._get(entity, kind, "quality", QUALITY_WARMUP)
                found.append(self._judge(series, entity, "quality", end_ms, mean, window_start_ms=start_ms))
        return [a for a in found if a is not None] + self.take_drift()

    def _window(self, key: str) -> RequestWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = RequestWindow(self.request_window_ms)
        return window

    def take_drift(self) -> list[Anomaly]:
        """Drift records found since the last call (empty without a drift monitor)."""
        drifts, self._drifts = self._drifts, []
        return drifts

    def observe_metric(self, event: MetricEvent) -> Anomaly | None:
        """One metric sample: entity = source, signal = metric name.

        A metric is a sample, not a window: one odd sample (a queue that was briefly
        long) is said as ``info``; warning and critical need the sample before to
        have been anomalous too (Alertmanager's ``for:`` of two samples).
        """
        found = self.observe(event.source, "metric_source", event.name, event.ts_ms, event.value)
        key = f"{event.source}\x1f{event.name}"
        was_flagged = key in self._flagged
        if found is None:
            self._flagged.pop(key, None)
            return None
        self._flagged[key] = None
        if not was_flagged and found.severity is not Severity.INFO:
            return dataclasses.replace(found, severity=Severity.INFO)
        return found

    def _get(self, entity: str, entity_kind: str, signal: str, warmup: int, has_trend: bool = False) -> _Series:
        key = (entity, signal)
        series = self._series.get(key)
        if series is None:
            direction: Direction = ("up" if signal in UPWARD_SIGNALS else
                                    "down" if signal in DOWNWARD_SIGNALS else "both")
            detector = SeriesDetector(window=self.window, warmup=warmup, direction=direction,
                                      min_scale=MIN_SCALES.get(signal, 0.0), has_trend=has_trend)
            series = _Series(entity_kind, detector, LogQuantile(self.policy.tau, 0.05))
            self._series[key] = series
        return series

    def _advance_clock(self, series: _Series, ts_ms: int) -> None:
        if series.last_ts_ms is not None:
            gap = max(ts_ms - series.last_ts_ms, 0)
            series.dt_ms = gap if series.dt_ms == 0.0 else series.dt_ms + 0.05 * (gap - series.dt_ms)
        series.last_ts_ms = ts_ms

    def _error_rate(self, key: str, is_error: float) -> float:
        rate = self._error_rates.get(key, is_error)
        rate += ERROR_RATE_ALPHA * (is_error - rate)
        self._error_rates[key] = rate
        return rate

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state of every series (for a changelog table); no pickle."""
        return {
            "version": VERSION, "window": self.window, "warmup": self.warmup,
            "request_window_ms": self.request_window_ms, "window_warmup": self.window_warmup,
            "series": [{"entity": e, "signal": s, "kind": v.kind, "detector": v.detector.snapshot(),
                        "scores": v.scores.snapshot(), "last_ts_ms": v.last_ts_ms, "dt_ms": v.dt_ms,
                        "first_ts_ms": v.first_ts_ms}
                       for (e, s), v in self._series.items()],
            "error_rates": dict(self._error_rates),
            "windows": {k: w.snapshot() for k, w in self._windows.items()},
            "quality_windows": {k: w.snapshot() for k, w in self._quality.items()},
            "flagged": list(self._flagged),
            "drift": self.drift.snapshot() if self.drift is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this bank's state by a :meth:`snapshot`."""
        self.window, self.warmup = int(state["window"]), int(state["warmup"])
        self.request_window_ms, self.window_warmup = int(state["request_window_ms"]), int(state["window_warmup"])
        self._series = {}
        for item in state["series"]:
            series = _Series(item["kind"], SeriesDetector.restore(item["detector"]),
                             LogQuantile.restore(item["scores"]))
            series.last_ts_ms, series.dt_ms = item["last_ts_ms"], float(item["dt_ms"])
            series.first_ts_ms = item.get("first_ts_ms")
            self._series[(item["entity"], item["signal"])] = series
        self._error_rates = {k: float(v) for k, v in state["error_rates"].items()}
        self._windows = {k: RequestWindow.restore(w) for k, w in state["windows"].items()}
        self._quality = {k: MeanWindow.restore(w) for k, w in state.get("quality_windows", {}).items()}
        self._flagged = dict.fromkeys(state.get("flagged", []))
        if self.drift is not None and state.get("drift") is not None:
            self.drift.restore(state["drift"])


def anomaly_id(entity: str, signal: str, ts_ms: int, detector: str) -> str:
    """Stable id (blake2b, not the salted builtin hash) so a replay yields the same ids."""
    key = f"{entity}\x1f{signal}\x1f{ts_ms}\x1f{detector}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()
