"""Quality shifts from feedback alone: a two-sided CUSUM on standardised quality residuals.

A route whose answers get worse while its latency, errors and price stay the
same shows it only in feedback. The router's quality means forget slowly (a
15 min half-life, because feedback is sparse and late), so on their own they
would take the better part of an hour to follow a step. ``QualityShift``
watches the residuals ``quality - current estimate`` of one route (pooled over
a workflow's segments, and separately per segment) with Page's CUSUM in units
of the residuals' own spread:

    S+ = max(0, S+ + z - k)      S- = max(0, S- - z - k)      alarm when S > h

``k`` (in standard deviations, and at least half of ``min_shift`` in quality
units) is half the smallest shift worth chasing and absorbs small biases of
the estimates (which lag and are never quite exact); ``h`` sets the
false-alarm rate. With
``k = 0.25`` and ``h = 30`` Siegmund's approximation gives an in-control run
length of ~10^7 observations per side, and a shift of 0.8 sd (a 0.25 quality
drop at the usual 0.3 spread of a request's feedback quality) is flagged
after ~55 residuals. Residuals are clipped at 4 sd so one odd rating cannot
trip it, and only counted once the estimate rests on ``min_weight``
observations (priors are not evidence). The alarm also gives the change
point's estimate: the mean residual since the statistic last left zero, and
how many residuals that is; the router moves its quality means by it.

>>> s = QualityShift()
>>> alarms = [s.observe(-0.25 + 0.05 * ((i % 3) - 1)) for i in range(200)]
>>> first = next(i for i, a in enumerate(alarms) if a is not None); 20 < first < 80
True
>>> round(alarms[first][0], 2), alarms[first][1] == first + 1
(-0.25, True)
"""

from __future__ import annotations

import math
from typing import Any

#: Residuals beyond this many standard deviations count as this many.
_CLIP = 4.0


class QualityShift:
    """Two-sided CUSUM over standardised residuals, with the change-point estimate.

    Args:
        k: Allowance, in standard deviations (half the smallest shift of interest).
        h: Decision threshold, in standard deviations.
        min_shift: Smallest shift of interest in quality units (the allowance is at least half of it).
        prior_std: Spread of a residual before any is seen.
        prior_weight: Pseudo-observations behind ``prior_std``.
    """

    __slots__ = ("k", "h", "min_shift", "var_sum", "var_weight", "up", "down", "up_n", "down_n", "up_sum", "down_sum")

    def __init__(self, k: float = 0.25, h: float = 30.0, prior_std: float = 0.3, prior_weight: float = 20.0,
                 min_shift: float = 0.1) -> None:
        self.k, self.h, self.min_shift = k, h, min_shift
        self.var_sum, self.var_weight = prior_std * prior_std * prior_weight, prior_weight
        self.up = self.down = 0.0
        self.up_n = self.down_n = 0
        self.up_sum = self.down_sum = 0.0

    @property
    def std(self) -> float:
        """Spread of the residuals (decayed over ~500 observations)."""
        return math.sqrt(self.var_sum / self.var_weight)

    def observe(self, residual: float) -> tuple[float, int] | None:
        """Fold one residual in; on an alarm return ``(estimated shift, residuals since the change)`` and restart."""
        std = self.std
        z = max(-_CLIP, min(_CLIP, residual / std))
        # The spread is learned from in-control residuals only: a shift must not widen its own yardstick.
        if abs(z) < 3.0:
            self.var_sum = self.var_sum * 0.998 + residual * residual
            self.var_weight = self.var_weight * 0.998 + 1.0
        k = max(self.k, 0.5 * self.min_shift / std)
        self.up = max(0.0, self.up + z - k)
        self.down = max(0.0, self.down - z - k)
        self.up_n, self.up_sum = (self.up_n + 1, self.up_sum + residual) if self.up > 0 else (0, 0.0)
        self.down_n, self.down_sum = (self.down_n + 1, self.down_sum + residual) if self.down > 0 else (0, 0.0)
        if self.up > self.h or self.down > self.h:
            n, total = (self.up_n, self.up_sum) if self.up > self.h else (self.down_n, self.down_sum)
            self.reset()
            return total / max(n, 1), n
        return None

    def reset(self) -> None:
        """Forget the running statistics (after an alarm, or when the route's evidence was reset)."""
        self.up = self.down = 0.0
        self.up_n = self.down_n = 0
        self.up_sum = self.down_sum = 0.0

    def to_dict(self) -> list[float]:
        """Plain JSON-able state."""
        return [self.k, self.h, self.var_sum, self.var_weight, self.up, self.down, self.up_n, self.down_n,
                self.up_sum, self.down_sum, self.min_shift]

    @classmethod
    def from_dict(cls, state: list[Any]) -> "QualityShift":
        """Inverse of ``to_dict``."""
        s = cls(float(state[0]), float(state[1]), min_shift=float(state[10]) if len(state) > 10 else 0.1)
        s.var_sum, s.var_weight, s.up, s.down = (float(x) for x in state[2:6])
        s.up_n, s.down_n = int(state[6]), int(state[7])
        s.up_sum, s.down_sum = float(state[8]), float(state[9])
        return s
