"""River drift detectors (PageHinkley, ADWIN) wrapped with JSON-able snapshots.

Composition, not subclassing: the wrapper owns a River detector and reads or
writes its state. PageHinkley's state is five numbers, restored exactly.
ADWIN's window lives in Rust (``river._river_rust``) and cannot be read back,
so its snapshot keeps the last ``replay`` inputs and a restore replays them:
the restored detector has seen a shorter history (documented approximation).
"""

# River 0.26 ships without type hints on these constructors and methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

from river import drift, stats

KINDS = ("page_hinkley", "adwin")


class DriftModel(Protocol):
    """A drift detector fed one number at a time."""

    name: str

    def update(self, x: float) -> bool:
        """Learn ``x``; True when a change was detected at this value."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state."""
        ...


class PageHinkleyModel:
    """Two-sided Page-Hinkley test; exact snapshot.

    Args:
        threshold: detection threshold (lambda) in units of the input.
        delta: tolerated change of the mean.
        min_instances: values before any detection.

    >>> m = PageHinkleyModel(threshold=20.0)
    >>> hits = [i for i, x in enumerate([0.0] * 100 + [2.0] * 100) if m.update(x)]
    >>> hits[0]
    112
    """

    name = "page_hinkley"

    def __init__(self, threshold: float = 30.0, delta: float = 0.25, min_instances: int = 30) -> None:
        self._ph = drift.PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold,
                                     alpha=1.0 - 1e-4)

    def update(self, x: float) -> bool:
        """Learn ``x``; True when a change was detected."""
        self._ph.update(x)
        return bool(self._ph.drift_detected)

    def snapshot(self) -> dict[str, Any]:
        """The test's sums and running mean (River 0.26 private fields, pinned)."""
        ph = self._ph
        return {"kind": self.name, "threshold": ph.threshold, "delta": ph.delta,
                "min_instances": ph.min_instances, "n": ph._x_mean.n, "mean": ph._x_mean.get(),
                "sum_inc": ph._sum_increase, "sum_dec": ph._sum_decrease,
                "min_inc": _finite(ph._min_increase), "max_dec": ph._max_decrease,
                "detected": ph.drift_detected}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> PageHinkleyModel:
        """Rebuild exactly from :meth:`snapshot`."""
        m = cls(float(state["threshold"]), float(state["delta"]), int(state["min_instances"]))
        ph = m._ph
        ph._x_mean = stats.Mean()
        ph._x_mean.n = int(state["n"])
        ph._x_mean._mean = float(state["mean"])
        ph._sum_increase, ph._sum_decrease = float(state["sum_inc"]), float(state["sum_dec"])
        ph._min_increase = math.inf if state["min_inc"] is None else float(state["min_inc"])
        ph._max_decrease = state["max_dec"]  # River starts it at the int -1; keep its type
        ph._drift_detected = bool(state["detected"])
        return m


class AdwinModel:
    """ADWIN on the input; snapshot replays the last ``replay`` inputs (approximate restore)."""

    name = "adwin"

    def __init__(self, delta: float = 0.002, replay: int = 256) -> None:
        self._delta = delta
        self._adwin = drift.ADWIN(delta=delta)
        self._tail: deque[float] = deque(maxlen=replay)

    def update(self, x: float) -> bool:
        """Learn ``x``; True when a change was detected."""
        self._adwin.update(x)
        self._tail.append(x)
        if self._adwin.drift_detected:
            self._tail.clear()  # the old regime is what ADWIN just dropped
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        """Delta and the recent inputs."""
        return {"kind": self.name, "delta": self._delta, "replay": self._tail.maxlen,
                "tail": list(self._tail)}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> AdwinModel:
        """Rebuild by replaying the saved inputs."""
        m = cls(float(state["delta"]), int(state["replay"]))
        for x in state["tail"]:
            m.update(float(x))
        return m


def make_drift_model(kind: str = "page_hinkley") -> DriftModel:
    """A fresh drift model by name (one of :data:`KINDS`)."""
    if kind == "page_hinkley":
        return PageHinkleyModel()
    if kind == "adwin":
        return AdwinModel()
    raise ValueError(f"unknown drift model {kind!r}; one of {KINDS}")


def restore_drift_model(state: dict[str, Any]) -> DriftModel:
    """Rebuild whichever model :meth:`snapshot` came from."""
    if state["kind"] == "page_hinkley":
        return PageHinkleyModel.restore(state)
    return AdwinModel.restore(state)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
