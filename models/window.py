"""Compact streaming statistics for anomaly scoring: sorted rolling window and online quantile.

Both keep plain floats in ``array('d')`` (8 bytes a value, not a boxed float
each) because a worker holds one of them per entity and signal, and both
snapshot to JSON-able dicts so a stream worker can checkpoint them.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from typing import Any


class SortedWindow:
    """The last ``capacity`` values, kept both in arrival order and sorted.

    Arrival order decides which value leaves; the sorted copy answers
    quantiles in O(1).

    >>> w = SortedWindow(3)
    >>> for x in (5.0, 1.0, 3.0, 10.0):
    ...     w.push(x)
    >>> w.quantile(0.5), len(w)
    (3.0, 3)
    """

    __slots__ = ("_capacity", "_ring", "_head", "_sorted")

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self._capacity = capacity
        self._ring = array("d")
        self._head = 0
        self._sorted = array("d")

    def __len__(self) -> int:
        return len(self._ring)

    def push(self, value: float) -> None:
        """Add ``value``, evicting the oldest one when full."""
        if len(self._ring) < self._capacity:
            self._ring.append(value)
        else:
            old = self._ring[self._head]
            del self._sorted[bisect_left(self._sorted, old)]
            self._ring[self._head] = value
            self._head = (self._head + 1) % self._capacity
        insort(self._sorted, value)

    def quantile(self, q: float) -> float:
        """Linear-interpolated quantile ``q`` in [0, 1]; 0.0 when empty."""
        n = len(self._sorted)
        if n == 0:
            return 0.0
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return self._sorted[lo] + (self._sorted[hi] - self._sorted[lo]) * (pos - lo)

    def median_nonzero(self) -> float:
        """Median of the values above 0 (for windows of magnitudes); 0.0 when there are none.

        >>> w = SortedWindow(5)
        >>> for x in (0.0, 0.0, 0.0, 2.0, 4.0):
        ...     w.push(x)
        >>> w.median_nonzero()
        3.0
        """
        start = bisect_right(self._sorted, 0.0)
        n = len(self._sorted) - start
        if n == 0:
            return 0.0
        mid = start + n // 2
        return self._sorted[mid] if n % 2 else 0.5 * (self._sorted[mid - 1] + self._sorted[mid])

    def oldest(self) -> float:
        """The value that will leave next (the first pushed while not full)."""
        return self._ring[self._head] if len(self._ring) == self._capacity else self._ring[0]

    def snapshot(self) -> dict[str, Any]:
        """Values oldest first; enough to rebuild an identical window."""
        ring = list(self._ring)
        return {"capacity": self._capacity, "values": ring[self._head :] + ring[: self._head]}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> SortedWindow:
        """Rebuild a window from :meth:`snapshot`."""
        window = cls(int(state["capacity"]))
        for value in state["values"]:
            window.push(float(value))
        return window


class LogQuantile:
    """Online quantile of a positive quantity by stochastic gradient on the pinball loss in log space.

    Each step moves ``log q`` by ``rate * tau`` up (value above) or
    ``rate * (1 - tau)`` down, so it settles where a fraction ``tau`` of values
    lie below, whatever their scale, and one huge value moves it no more than a
    merely large one (robust to the anomalies it helps to judge).

    >>> q = LogQuantile(tau=0.5, initial=1.0, rate=0.1)
    >>> for _ in range(200):
    ...     q.update(4.0)
    >>> round(q.value, 2)
    4.06
    """

    __slots__ = ("tau", "rate", "_log_q")

    def __init__(self, tau: float, initial: float, rate: float = 0.02) -> None:
        if not 0.0 < tau < 1.0 or initial <= 0.0:
            raise ValueError("tau must be in (0, 1) and initial positive")
        self.tau, self.rate = tau, rate
        self._log_q = math.log(initial)

    @property
    def value(self) -> float:
        """The current estimate."""
        return math.exp(self._log_q)

    def update(self, x: float) -> None:
        """Learn one value (after it has been judged: score, then learn)."""
        if x > self.value:
            self._log_q += self.rate * self.tau
        else:
            self._log_q -= self.rate * (1.0 - self.tau)

    def snapshot(self) -> dict[str, float]:
        """Plain-dict state."""
        return {"tau": self.tau, "rate": self.rate, "log_q": self._log_q}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> LogQuantile:
        """Rebuild from :meth:`snapshot`."""
        q = cls(float(state["tau"]), 1.0, float(state["rate"]))
        q._log_q = float(state["log_q"])
        return q


HALF_SCORE_Z = 1.5  # the relative strength that scores 0.5


def squash(z_rel: float) -> float:
    """Map a non-negative relative strength to a score in [0, 1): 0.5 at 1.5, 0.9 at 4.5, never saturating.

    A rational curve rather than a logistic so that very large anomalies stay
    ordered among themselves (ranking metrics need no ties at the top).

    >>> squash(0.0), squash(1.5), round(squash(4.5), 3)
    (0.0, 0.5, 0.9)
    """
    z2 = z_rel * z_rel
    # Written as 1 / (1 + c / z2) so an infinite strength gives 1.0, not inf / inf.
    return 1.0 / (1.0 + HALF_SCORE_Z**2 / z2) if z2 > 0.0 else 0.0
