"""Exploration: route shares from reward posteriors (Thompson P(best) or UCB), then made safe (floors, caps).

Thompson sampling is used by default. Measured with the simulator's offline
mode (seed 1, default durations at 20 req/s, 300 s feedback window, the
router's defaults otherwise), reward_ratio Thompson vs UCB (c = 2):

============== ========= ======
scenario       Thompson  UCB
============== ========= ======
steady         0.9941    0.9873
drift          0.9605    0.9524
outage         0.9684    0.9434
traffic-spike  0.9706    0.9546
price-change   1.0024    0.9983
============== ========= ======

UCB hands a whole segment to one route until its bound drops, so a
segment lurches between routes and lags on an outage; Thompson's P(best)
splits traffic between routes whose rewards are within noise of each other
and moves smoothly as evidence comes in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Sequence

import numpy as np


class Exploration(StrEnum):
    """How raw route shares are drawn from the posteriors."""

    THOMPSON = "thompson"
    UCB = "ucb"


def thompson_shares(means: Sequence[float], stds: Sequence[float], normals: np.ndarray) -> list[float]:
    """Each route's probability of having the best reward, by Monte Carlo on normal posteriors.

    ``normals`` is a fixed, seeded matrix of standard normal draws (draws × at
    least as many columns as routes): common random numbers make the shares a
    smooth function of the posteriors, so Monte Carlo noise alone never moves
    a published policy; per-request randomness lives in ``Router.decide``.

    >>> z = np.random.default_rng(0).standard_normal((64, 2))
    >>> thompson_shares([1.0, 0.0], [0.01, 0.01], z)
    [1.0, 0.0]
    """
    k = len(means)
    if k <= 1:
        return [1.0] * k
    samples = normals[:, :k] * np.asarray(stds) + np.asarray(means)
    counts = np.bincount(np.argmax(samples, axis=1), minlength=k)
    return (counts / len(normals)).tolist()  # type: ignore[no-any-return]


def ucb_shares(means: Sequence[float], stds: Sequence[float], c: float = 2.0) -> list[float]:
    """All of the share to the highest upper confidence bound ``mean + c * std`` (ties split).

    >>> ucb_shares([0.5, 0.4], [0.01, 0.2])
    [0.0, 1.0]
    """
    bounds = [m + c * s for m, s in zip(means, stds)]
    if not bounds:
        return []
    top = max(bounds)
    winners = [b >= top - 1e-12 for b in bounds]
    n = sum(winners)
    return [1.0 / n if w else 0.0 for w in winners]


def safe_shares(raw: Sequence[float], is_new: Sequence[bool], min_share: float, max_new_share: float) -> list[float]:
    """Bound exploration: a new (or recovering) route gets at most ``max_new_share``; every route at least ``min_share``.

    When every route is new (cold start) the caps cannot all hold and the raw
    shares, which then follow the priors, are kept.

    >>> [round(p, 3) for p in safe_shares([0.1, 0.9], [False, True], 0.02, 0.1)]
    [0.9, 0.1]
    >>> [round(p, 3) for p in safe_shares([1.0, 0.0, 0.0], [False, False, False], 0.02, 0.1)]
    [0.96, 0.02, 0.02]
    """
    k = len(raw)
    if k == 0:
        return []
    total = sum(raw)
    shares = [p / total for p in raw] if total > 0 else [1.0 / k] * k
    if any(is_new) and not all(is_new):
        excess = sum(max(0.0, p - max_new_share) for p, new in zip(shares, is_new) if new)
        shares = [min(p, max_new_share) if new else p for p, new in zip(shares, is_new)]
        old_total = sum(p for p, new in zip(shares, is_new) if not new)
        old_count = sum(1 for new in is_new if not new)
        shares = [p if new else p + excess * (p / old_total if old_total > 0 else 1.0 / old_count)
                  for p, new in zip(shares, is_new)]
    floor = min(min_share, 1.0 / k)
    lifted = sum(max(0.0, floor - p) for p in shares)
    if lifted > 0:
        above = sum(p - floor for p in shares if p > floor)
        shares = [floor if p <= floor else p - lifted * (p - floor) / above for p in shares]
    total = sum(shares)
    return [p / total for p in shares]


def total_variation(a: Sequence[float], b: Sequence[float]) -> float:
    """Half the L1 distance between two share vectors over the same routes.

    >>> total_variation([0.5, 0.5], [0.9, 0.1])
    0.4
    """
    return 0.5 * sum(abs(x - y) for x, y in zip(a, b))
