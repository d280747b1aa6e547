"""The trend component of a series detector: the recent level against the level of the older half of its window.

A slow degradation (latency up 2.5 times over half an hour) hides from the
level component — the rolling median follows it and the ramp widens the
rolling IQR — and from the step component — each step is small. It shows as
a gap between the median of the last few values and the median of the older
half of the window, measured in units of step-to-step noise (which the ramp
does not inflate). Measured on the simulator's window medians
(``bench/detection.py``): steady routes stay below z = 4.7 over 6 h, while
the ``drift`` scenario's route passes z = 8 six minutes into its ramp.
"""

from __future__ import annotations

from array import array
from typing import Any

from models.window import LogQuantile, SortedWindow

# The median of SHORT values of noise sigma spreads by ~0.54 sigma, and the step scale
# (|x - median of the last SHORT|) is ~1.13 sigma: the ratio makes z about unit-variance.
REFERENCE_NOISE = 0.48
ABSORB_LIMIT = 2.0  # |z| / quantile above which a value is not learned by the calibration quantile


class TrendComponent:
    """Recent-versus-old level of one series, with its own calibration quantile.

    Args:
        window: values of the detector's window; the older half is the baseline.
        tau: quantile of past ``|z|`` the score is relative to.
        floor: lowest value of that quantile.

    >>> t = TrendComponent(window=16, tau=0.995, floor=3.0)
    >>> for x in range(16):
    ...     t.learn(float(x % 2), 0.0, False)
    >>> round(t.z(1.0, [0.0, 1.0, 0.0, 1.0], 0.5), 2), round(t.z(9.0, [8.0, 9.0, 9.0, 8.0], 0.5), 2)
    (2.08, 35.42)
    """

    __slots__ = ("_capacity", "_half", "_old", "quantile", "floor")

    def __init__(self, window: int, tau: float, floor: float) -> None:
        self.floor = floor
        self._capacity = max(window // 2, 2)
        self._half = array("d")  # the newer half, arrival order
        self._old = SortedWindow(max(window - self._capacity, 2))
        self.quantile = LogQuantile(tau, floor)

    def z(self, x: float, recent: list[float], step_scale: float) -> float:
        """Signed z of the median of ``recent`` and ``x`` against the older half's median (0 until it has values)."""
        if len(self._old) < len(recent) + 1:
            return 0.0
        values = sorted([*recent, x])
        mid = len(values) // 2
        reference = values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
        return (reference - self._old.quantile(0.5)) / (REFERENCE_NOISE * step_scale)

    def learn(self, x: float, z: float, is_warm: bool) -> None:
        """Learn ``x`` (the value ``z`` was scored for); calibrate on ``|z|`` once warm.

        A ``z`` past ``ABSORB_LIMIT`` times the quantile is not learned by the
        quantile: a degradation lasts many values, and learning them would raise
        the bar until the degradation no longer scored (it did, in 10 minutes).
        The gap itself closes once the window has moved past the change.
        """
        if is_warm and abs(z) <= ABSORB_LIMIT * max(self.quantile.value, self.floor):
            self.quantile.update(abs(z))
        self._half.append(x)
        if len(self._half) > self._capacity:
            self._old.push(self._half[0])
            del self._half[0]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"capacity": self._capacity, "floor": self.floor, "half": list(self._half), "old": self._old.snapshot(),
                "quantile": self.quantile.snapshot()}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> TrendComponent:
        """Rebuild from :meth:`snapshot`."""
        t = cls(2, 0.5, float(state["floor"]))
        t._capacity = int(state["capacity"])
        t._half = array("d", (float(v) for v in state["half"]))
        t._old = SortedWindow.restore(state["old"])
        t.quantile = LogQuantile.restore(state["quantile"])
        return t
