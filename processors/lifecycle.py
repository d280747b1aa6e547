"""Model lifecycle: how well the router predicts, which versions of a workflow's model were published, rollback.

``AccuracyMeter`` compares, for every final outcome that carries feedback, the
reward the router expected of the route it served (before learning from it)
with the reward observed: mean absolute error and bias (calibration) per
workflow, and a drift test on the error, so a model that stops predicting well
raises an ``Anomaly`` like any other signal. ``model_record`` and
``verify_model`` make the signed ``ModelVersion`` records that carry one
workflow's learned state out of the changelog (``lw.models``): the history
``loopwise models`` shows and the state a rollback restores.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from processors.drift import DriftMonitor
from schemas.records import Anomaly, ModelVersion

#: The command action that restores a recorded model version (target: the workflow; params: version, model).
MODEL_ROLLBACK = "model_rollback"
#: The error statistics forget with this many outcomes' weight (an exponential window).
WINDOW_N = 500
#: Outcomes of a workflow before its error feeds the drift test.
WARMUP_N = 50


class AccuracyMeter:
    """Predicted vs observed reward per workflow; a drift of the error is an anomaly.

    >>> meter = AccuracyMeter()
    >>> for i in range(200):
    ...     _ = meter.observe("wf", predicted=0.6, observed=0.62, ts_ms=i * 1000)
    >>> stats = meter.accuracy("wf")
    >>> stats["n"], round(stats["mae"], 3), round(stats["bias"], 3)
    (200, 0.02, 0.02)
    """

    def __init__(self) -> None:
        self._stats: dict[str, list[float]] = {}  # workflow -> [n, mae, bias, mean square deviation of |error|]
        self.drift = DriftMonitor(min_gap_ms=600_000)

    def observe(self, workflow: str, predicted: float, observed: float, ts_ms: int) -> Anomaly | None:
        """One prediction scored; a DRIFT anomaly (entity ``model:<workflow>``) when the error shifts."""
        stats = self._stats.setdefault(workflow, [0.0, 0.0, 0.0, 0.0])
        error = observed - predicted
        n, mae, bias, var = stats
        alpha = 1.0 / min(n + 1.0, WINDOW_N)
        deviation = abs(error) - mae
        stats[:] = [n + 1.0, mae + alpha * deviation, bias + alpha * (error - bias),
                    (1 - alpha) * (var + alpha * deviation * deviation)]
        if n < WARMUP_N:
            return None
        residual = deviation / max(var ** 0.5, 1e-3)
        return self.drift.observe(f"model:{workflow}", "model", "reward_error", ts_ms, residual)

    def accuracy(self, workflow: str) -> dict[str, float]:
        """``n``, ``mae`` and ``bias`` (observed − predicted) of a workflow's predictions."""
        n, mae, bias, _ = self._stats.get(workflow, [0.0, 0.0, 0.0, 0.0])
        return {"n": int(n), "mae": mae, "bias": bias}

    def snapshot(self) -> dict[str, Any]:
        return {"stats": {w: list(v) for w, v in sorted(self._stats.items())}, "drift": self.drift.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        self._stats = {w: [float(x) for x in v] for w, v in state["stats"].items()}
        self.drift.restore(state["drift"])


def _signature(key: bytes, workflow: str, version: int, state: str) -> str:
    message = b"\x1f".join((workflow.encode(), str(version).encode(), state.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def model_record(key: bytes, workflow: str, version: int, ts_ms: int, model: str, reason: str,
                 accuracy: dict[str, float], state: dict[str, Any]) -> ModelVersion:
    """A signed record of one workflow's model at one version.

    >>> record = model_record(b"k" * 32, "wf", 3, 0, "m", "published", {"n": 0, "mae": 0.0, "bias": 0.0}, {})
    >>> verify_model(record, b"k" * 32), verify_model(record, b"x" * 32)
    (True, False)
    """
    text = json.dumps(state, separators=(",", ":"), sort_keys=True)
    return ModelVersion(workflow=workflow, version=version, ts_ms=ts_ms, model=model, reason=reason,
                        n=int(accuracy["n"]), mae=float(accuracy["mae"]), bias=float(accuracy["bias"]),
                        state=text, signature=_signature(key, workflow, version, text))


def verify_model(record: ModelVersion, key: bytes) -> bool:
    """Whether ``record`` was signed with ``key`` (and not altered since)."""
    expected = _signature(key, record.workflow, record.version, record.state)
    return hmac.compare_digest(expected, record.signature)
