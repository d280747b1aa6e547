"""Bayesian view of an experiment's arms and the traffic split drawn from it; sticky buckets.

Each arm's mean gets a normal posterior (normal prior around the pooled mean,
known-variance update with the arm's sample variance): at the sample sizes
experiments run at, this is the central-limit approximation of any bounded
reward. The allocation is a probability distribution the gateway samples from,
computed in closed form from the chances to be best:

- Thompson sampling gives arm ``i`` the share ``P(i is best)``;
- top-two Thompson sampling (Russo 2016, the default, ``beta = 0.5``) gives
  ``beta * P(i best) + (1 - beta) * sum_j P(j best) * P(i best without j)``:
  the leader keeps about half the traffic and its closest challengers share
  the rest (with two arms: exactly 50/50). It is built to *identify* the best
  arm, which is what an experiment is for; plain Thompson sampling starves the
  runner-up and costs power.

Then every active arm gets at least ``min_share``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

from processors.experiments.sequential import Moments

_TWO_64 = float(2**64)


@dataclass(frozen=True, slots=True)
class Posterior:
    """Normal posterior of one arm's mean."""

    mean: float
    sd: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval."""
        half = float(ndtri((1.0 + level) / 2.0)) * self.sd
        return self.mean - half, self.mean + half


def posteriors(arms: Sequence[Moments], prior_sd: float) -> list[Posterior]:
    """Normal posteriors of the arms' means, with a prior ``N(pooled mean, prior_sd^2)`` shared by all.

    An arm with under two values borrows the pooled variance (or ``prior_sd^2`` without any).

    >>> p = posteriors([Moments(100, 0.5, 0.09 * 99), Moments()], prior_sd=1.0)
    >>> round(p[0].mean, 4), round(p[0].sd, 4), p[1].mean, p[1].sd
    (0.5, 0.03, 0.5, 1.0)
    """
    total = sum(a.n for a in arms)
    pooled_mean = sum(a.n * a.mean for a in arms) / total if total else 0.0
    dof = sum(a.n - 1 for a in arms if a.n > 1)
    pooled_var = sum(a.m2 for a in arms if a.n > 1) / dof if dof else prior_sd * prior_sd
    prior_precision = 1.0 / (prior_sd * prior_sd)
    out = []
    for arm in arms:
        var = max(arm.variance if arm.n > 1 else pooled_var, 1e-12)
        precision = prior_precision + arm.n / var
        mean = (prior_precision * pooled_mean + arm.n / var * arm.mean) / precision
        out.append(Posterior(mean, 1.0 / math.sqrt(precision)))
    return out


@dataclass(frozen=True, slots=True)
class Chances:
    """Per arm: chance to be best and expected loss; per pair: chance to be best once another is set aside."""

    p_best: list[float]
    expected_loss: list[float]
    #: ``best_without[j][i]``: probability that ``i`` is best among the arms other than ``j`` (0 on the diagonal).
    best_without: list[list[float]]


def chance_to_win(posts: Sequence[Posterior], rng: np.random.Generator, draws: int = 4000) -> Chances:
    """Chances to be best, expected losses ``E[max_j mu_j - mu_i]``, and best-without-``j`` chances.

    Exact for two arms; Monte Carlo with ``draws`` joint draws from ``rng`` beyond.

    >>> c = chance_to_win([Posterior(0.5, 0.01), Posterior(0.52, 0.01)], np.random.default_rng(0))
    >>> [round(x, 4) for x in c.p_best], [round(x, 5) for x in c.expected_loss], c.best_without
    ([0.0786, 0.9214], [0.0205, 0.0005], [[0.0, 1.0], [1.0, 0.0]])
    """
    k = len(posts)
    if k == 1:
        return Chances([1.0], [0.0], [[0.0]])
    if k == 2:
        a, b = posts
        sd = math.hypot(a.sd, b.sd)
        z = (b.mean - a.mean) / sd
        p_b = float(ndtr(z))
        # E[max(0, D)] for D ~ N(m, s^2) is s*phi(m/s) + m*Phi(m/s).
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        loss_a = sd * pdf + (b.mean - a.mean) * p_b
        loss_b = sd * pdf + (a.mean - b.mean) * (1.0 - p_b)
        return Chances([1.0 - p_b, p_b], [loss_a, loss_b], [[0.0, 1.0], [1.0, 0.0]])
    means = np.array([p.mean for p in posts])
    sds = np.array([p.sd for p in posts])
    sample = rng.standard_normal((draws, k)) * sds + means
    p_best = np.bincount(sample.argmax(axis=1), minlength=k) / draws
    loss = (sample.max(axis=1, keepdims=True) - sample).mean(axis=0)
    without = []
    for j in range(k):
        masked = sample.copy()
        masked[:, j] = -np.inf
        without.append((np.bincount(masked.argmax(axis=1), minlength=k) / draws).tolist())
    return Chances(p_best.tolist(), loss.tolist(), without)


def top_two_shares(chances: Chances, beta: float | None) -> list[float]:
    """Traffic shares: Thompson (``beta=None``: ``P(best)``) or top-two Thompson.

    Top-two: with probability ``beta`` the arm a posterior draw finds best; else
    the challenger, the arm a fresh draw finds best once that leader is set
    aside: ``beta * P(i best) + (1 - beta) * sum_j P(j best) * P(i best without j)``.
    (Classic top-two re-draws until another arm wins, which never ends once
    one arm's chance reaches 1; the fresh-draw challenger keeps ranking the
    others by their posteriors.)

    >>> c = Chances([0.7, 0.2, 0.1], [0.0] * 3, [[0, 0.8, 0.2], [0.9, 0, 0.1], [0.75, 0.25, 0]])
    >>> [round(x, 4) for x in top_two_shares(c, 0.5)], [round(x, 4) for x in top_two_shares(c, None)]
    ([0.4775, 0.3925, 0.13], [0.7, 0.2, 0.1])
    """
    p = [min(max(x, 0.0), 1.0) for x in chances.p_best]
    if beta is None or len(p) < 2:
        total = sum(p)
        return [x / total for x in p] if total > 0 else [1.0 / len(p)] * len(p)
    shares = [beta * p_i + (1.0 - beta) * sum(p[j] * chances.best_without[j][i] for j in range(len(p)) if j != i)
              for i, p_i in enumerate(p)]
    total = sum(shares)
    return [s / total for s in shares]


def with_floor(shares: Sequence[float], is_active: Sequence[bool], min_share: float) -> list[float]:
    """Zero for inactive arms; each active arm gets at least ``min_share`` (``1/k`` if the floors would not fit).

    >>> [round(x, 4) for x in with_floor([0.98, 0.01, 0.01], [True, True, True], 0.05)]
    [0.883, 0.0585, 0.0585]
    >>> with_floor([0.6, 0.4], [True, False], 0.05)
    [1.0, 0.0]
    """
    active = [i for i, flag in enumerate(is_active) if flag]
    if not active:
        return [0.0] * len(shares)
    floor = min(min_share, 1.0 / len(active))
    mass = sum(shares[i] for i in active)
    out = [0.0] * len(shares)
    for i in active:
        base = shares[i] / mass if mass > 0 else 1.0 / len(active)
        out[i] = floor + (1.0 - floor * len(active)) * base
    return out


def bucket(experiment: str, unit_id: str) -> float:
    """A unit's stable position in [0, 1): a keyed blake2b of (experiment, unit), the same in every process.

    >>> bucket("exp", "user-1") == bucket("exp", "user-1"), round(bucket("exp", "user-1"), 6)
    (True, 0.399088)
    """
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8, key=experiment.encode()[:64],
                             person=b"lw-experiment").digest()
    return int.from_bytes(digest, "big") / _TWO_64


def pick(position: float, variants: Sequence[str], shares: Sequence[float]) -> str:
    """The variant whose slice of the cumulative split ``[0, 1)`` holds ``position``.

    >>> pick(0.3, ["a", "b"], [0.5, 0.5]), pick(0.7, ["a", "b"], [0.5, 0.5]), pick(0.99, ["a", "b"], [1.0, 0.0])
    ('a', 'b', 'a')
    """
    edge = 0.0
    last = 0
    for i, share in enumerate(shares):
        if share <= 0:
            continue
        edge += share
        last = i
        if position < edge:
            return variants[i]
    return variants[last]  # rounding left the top sliver unclaimed
