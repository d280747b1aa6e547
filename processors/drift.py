"""Drift of residuals and key metrics: River drift detectors per (entity, signal) → ``Anomaly(kind=DRIFT)``."""

from __future__ import annotations

import hashlib
from typing import Any

from models.drift import DriftModel, make_drift_model, restore_drift_model
from schemas.records import Anomaly, Severity, SignalKind

VERSION = "1"
CLIP = 8.0  # a single spike must not pass for a drift: drift is a sustained shift


class DriftMonitor:
    """Feeds a standardised residual per (entity, signal) to a drift detector and reports changes.

    Inputs are scale-free (a detector's robust z, or a model's residual over
    its rolling error), clipped to ±``CLIP`` so an isolated spike moves the
    test by at most a few units. After a detection River resets the test, so
    the next drift of the same series is reported afresh.

    Args:
        kind: ``page_hinkley`` (default; exact snapshot) or ``adwin``.
        min_gap_ms: a series reports at most one drift per this much event time.

    >>> monitor = DriftMonitor()
    >>> hits = [monitor.observe("r1", "route", "latency_ms", 1000 * i, 0.0 if i < 200 else 3.0)
    ...         for i in range(400)]
    >>> [h.ts_ms for h in hits if h]
    [211000]
    """

    def __init__(self, kind: str = "page_hinkley", min_gap_ms: int = 600_000) -> None:
        self.kind, self.min_gap_ms = kind, min_gap_ms
        self._models: dict[tuple[str, str], DriftModel] = {}
        self._first_ms: dict[tuple[str, str], int] = {}
        self._last_hit_ms: dict[tuple[str, str], int] = {}

    def observe(self, entity: str, entity_kind: str, signal: str, ts_ms: int,
                residual: float) -> Anomaly | None:
        """Learn one standardised residual; an ``Anomaly`` of kind DRIFT when the test fires."""
        key = (entity, signal)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = make_drift_model(self.kind)
            self._first_ms[key] = ts_ms
        if not model.update(max(-CLIP, min(CLIP, residual))):
            return None
        start = self._first_ms[key]
        self._first_ms[key] = ts_ms  # the test restarts: the next window begins here
        last = self._last_hit_ms.get(key)
        if last is not None and ts_ms - last < self.min_gap_ms:
            return None
        self._last_hit_ms[key] = ts_ms
        return _drift_record(entity, entity_kind, signal, ts_ms, residual, start, model.name)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of every series' test."""
        return {"kind": self.kind, "min_gap_ms": self.min_gap_ms,
                "series": [{"entity": e, "signal": s, "model": m.snapshot(),
                            "first_ms": self._first_ms[(e, s)],
                            "last_hit_ms": self._last_hit_ms.get((e, s))}
                           for (e, s), m in self._models.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this monitor's state by a :meth:`snapshot`."""
        self.kind, self.min_gap_ms = state["kind"], int(state["min_gap_ms"])
        self._models, self._first_ms, self._last_hit_ms = {}, {}, {}
        for item in state["series"]:
            key = (item["entity"], item["signal"])
            self._models[key] = restore_drift_model(item["model"])
            self._first_ms[key] = int(item["first_ms"])
            if item["last_hit_ms"] is not None:
                self._last_hit_ms[key] = int(item["last_hit_ms"])


def _drift_record(entity: str, entity_kind: str, signal: str, ts_ms: int, residual: float,
                  start_ms: int, detector: str) -> Anomaly:
    key = f"drift\x1f{entity}\x1f{signal}\x1f{ts_ms}".encode()
    # Expected range of a standardised residual without drift: about ±3.
    return Anomaly(
        anomaly_id=hashlib.blake2b(key, digest_size=12).hexdigest(), ts_ms=ts_ms, entity=entity,
        entity_kind=entity_kind, signal=signal, kind=SignalKind.DRIFT, score=1.0,
        severity=Severity.WARNING, value=residual, expected_low=-3.0, expected_high=3.0,
        window_start_ms=start_ms, window_end_ms=ts_ms, detector=detector,
        detector_version=VERSION)
