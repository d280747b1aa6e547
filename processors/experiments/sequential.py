"""Anytime-valid statistics of experiments: running moments, the normal-mixture mSPRT and its confidence sequence, SRM.

The primary test is the mixture sequential probability ratio test (mSPRT) of
Johari, Koomen, Pekelis and Walsh ("Always valid inference", 2017/2022) on the
difference of two arms' means, with a normal mixing distribution
``N(0, tau^2)`` over the true difference. With the difference estimate
``d = mean_b - mean_a`` and its plug-in variance ``V = s_a^2/n_a + s_b^2/n_b``
the mixture likelihood ratio against ``H0: difference = 0`` is::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))

Under H0, ``Lambda`` is (asymptotically, through the central limit theorem and
the plug-in variances) a nonnegative martingale with mean 1, so by Ville's
inequality ``P(exists t: Lambda_t >= 1/alpha) <= alpha``: looking at it after
every observation, as often as one likes, keeps the false-positive rate at
``alpha``. ``1/Lambda`` is the always-valid p-value, and inverting the test
gives a confidence sequence ``d ± radius`` valid at every time at once.

``tau`` is set in units of the pooled standard deviation
(``tau = effect_size_sd * sd``): the test is tuned to detect an effect of
about that standardized size soonest, and stays valid for every effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from scipy.special import chdtrc


@dataclass(slots=True)
class Moments:
    """Count, mean and sum of squared deviations of a stream (Welford), JSON-able.

    >>> m = Moments()
    >>> for x in (1.0, 2.0, 3.0, 4.0):
    ...     m.add(x)
    >>> m.n, m.mean, m.variance
    (4, 2.5, 1.6666666666666667)
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        """Fold one value in."""
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        """Unbiased sample variance; 0 below two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Moments:
        """Rebuild from ``to_dict``'s output."""
        return cls(n=int(data["n"]), mean=float(data["mean"]), m2=float(data["m2"]))


@dataclass(frozen=True, slots=True)
class DifferenceTest:
    """The mSPRT of ``mean_b - mean_a = 0`` at one moment, and the confidence sequence there."""

    delta: float
    variance: float
    tau2: float
    log_lr: float
    p_value: float
    cs_low: float
    cs_high: float

    @property
    def z(self) -> float:
        """The fixed-horizon z statistic, for reference only (not valid under monitoring)."""
        return self.delta / math.sqrt(self.variance) if self.variance > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        """Rounded fields for a decision's evidence."""
        return {"delta": _r(self.delta), "z": _r(self.z), "log_lr": _r(self.log_lr),
                "always_valid_p": _r(self.p_value), "cs_low": _r(self.cs_low), "cs_high": _r(self.cs_high)}


def mixture_log_lr(delta: float, variance: float, tau2: float) -> float:
    """Log of the normal-mixture likelihood ratio for a difference ``delta`` with variance ``variance``.

    >>> round(mixture_log_lr(0.0, 1.0, 1.0), 6)   # no difference: the ratio is below 1
    -0.346574
    >>> round(mixture_log_lr(3.0, 1.0, 1.0), 6)
    1.903426
    """
    total = variance + tau2
    return 0.5 * math.log(variance / total) + tau2 * delta * delta / (2.0 * variance * total)


def cs_radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at level ``1 - alpha``.

    It is the set of differences the mSPRT would not reject: ``log_lr(d - delta) < log(1/alpha)``.

    >>> round(cs_radius(1.0, 1.0, 0.05), 6)
    3.656395
    """
    total = variance + tau2
    return math.sqrt(2.0 * variance * total / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log(total / variance)))


def compare(a: Moments, b: Moments, effect_size_sd: float, alpha: float) -> DifferenceTest | None:
    """Test ``mean_b - mean_a = 0`` anytime-validly; None while either arm has under two values.

    Args:
        a: The reference arm.
        b: The arm compared with it.
        effect_size_sd: Mixture standard deviation in units of the pooled sd (``tau = effect_size_sd * sd``).
        alpha: Level of the confidence sequence.

    >>> a, b = Moments(1000, 0.50, 0.09 * 999), Moments(1000, 0.56, 0.09 * 999)
    >>> t = compare(a, b, 0.1, 0.05)
    >>> round(t.delta, 3), round(t.z, 2), t.p_value < 0.05, t.cs_low > 0
    (0.06, 4.47, True, True)
    """
    if a.n < 2 or b.n < 2:
        return None
    var_a, var_b = max(a.variance, 1e-12), max(b.variance, 1e-12)
    variance = var_a / a.n + var_b / b.n
    tau2 = effect_size_sd * effect_size_sd * 0.5 * (var_a + var_b)
    delta = b.mean - a.mean
    log_lr = mixture_log_lr(delta, variance, tau2)
    radius = cs_radius(variance, tau2, alpha)
    p_value = min(1.0, math.exp(-log_lr)) if log_lr > -700 else 1.0
    return DifferenceTest(delta, variance, tau2, log_lr, p_value, delta - radius, delta + radius)


def srm_p_value(observed: Sequence[float], expected: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of observed against expected assignment counts.

    Arms expected to get nothing are left out, unless something was observed
    there (then the mismatch is certain: 0.0). Fewer than two arms with
    expectations, or no data: 1.0.

    >>> round(srm_p_value([600, 400], [500, 500]), 12)
    2.54e-10
    >>> srm_p_value([510, 490], [500, 500]) > 0.5
    True
    """
    pairs = [(o, e) for o, e in zip(observed, expected) if e > 0]
    if any(o > 0 and e <= 0 for o, e in zip(observed, expected)):
        return 0.0
    total_o, total_e = sum(o for o, _ in pairs), sum(e for _, e in pairs)
    if len(pairs) < 2 or total_o <= 0 or total_e <= 0:
        return 1.0
    # Rescale so both sums agree, as the test requires (arms left out carry no expectation).
    scale = total_o / total_e
    statistic = sum((o - e * scale) ** 2 / (e * scale) for o, e in pairs)
    return float(chdtrc(len(pairs) - 1, statistic))  # what scipy.stats.chisquare computes, without its overhead


def _r(x: float) -> float:
    return float(f"{x:.6g}")
