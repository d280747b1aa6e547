"""The reward of one request: the single formula shared by the simulator's truth and loopwise.

A request's reward is a weighted sum of what a workflow owner cares about,
with weights and reference scales taken from the workflow's ``Objective``::

    quality_part = wq * quality                    (quality is 0 when the request failed)
    latency_part = wl * latency_ms / latency_ref_ms
    cost_part    = wc * cost_usd / cost_ref_usd
    error_part   = we * (1 if failed else 0)
    total        = quality_part - latency_part - cost_part - error_part

The parts are reported as positive magnitudes; ``total`` subtracts the
penalties. ``reward_arrays`` applies the very same arithmetic element-wise to
numpy arrays, so the simulator can score a million requests without a Python
loop and still agree to the last bit with ``reward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from schemas.records import Objective

FloatArray = npt.NDArray[np.float64]
_T = TypeVar("_T", float, FloatArray)


@dataclass(frozen=True, slots=True)
class RewardParts:
    """A reward and the parts it is made of (penalties as positive magnitudes)."""

    total: float
    quality: float
    latency: float
    cost: float
    error: float


def _parts(quality: _T, latency_ms: _T, cost_usd: _T, error: _T, objective: Objective) -> tuple[_T, _T, _T, _T, _T]:
    # One body for scalars and arrays: the two entry points cannot drift apart.
    quality_part = objective.quality_weight * quality * (1.0 - error)
    latency_part = objective.latency_weight * latency_ms / objective.latency_ref_ms
    cost_part = objective.cost_weight * cost_usd / objective.cost_ref_usd
    error_part = objective.error_weight * error
    total = quality_part - latency_part - cost_part - error_part
    return total, quality_part, latency_part, cost_part, error_part


def reward(quality: float, latency_ms: float, cost_usd: float, is_error: bool, objective: Objective) -> RewardParts:
    """Score one request by ``objective`` (see the module docstring for the formula).

    Args:
        quality: True or estimated quality of the answer, in [0, 1].
        latency_ms: End-to-end latency seen by the caller.
        cost_usd: What the request cost.
        is_error: Whether it failed (error, timeout or rejection); quality then counts as 0.
        objective: The workflow's weights and reference scales.

    Returns:
        The total and its parts.

    >>> parts = reward(0.8, 1000.0, 0.004, False, Objective())
    >>> round(parts.total, 6), parts.quality, parts.latency, parts.cost, parts.error
    (0.575, 0.8, 0.125, 0.1, 0.0)
    >>> reward(0.8, 1000.0, 0.0, True, Objective()).total
    -1.125
    """
    total, q, lat, cost, err = _parts(float(quality), float(latency_ms), float(cost_usd), float(is_error), objective)
    return RewardParts(total=total, quality=q, latency=lat, cost=cost, error=err)


def reward_arrays(
    quality: FloatArray, latency_ms: FloatArray, cost_usd: FloatArray, is_error: npt.NDArray[np.bool_], objective: Objective
) -> FloatArray:
    """Total reward of many requests at once, element-wise equal to ``reward(...).total``.

    >>> q = np.array([0.8, 0.8]); lat = np.array([1000.0, 1000.0]); cost = np.array([0.004, 0.0])
    >>> reward_arrays(q, lat, cost, np.array([False, True]), Objective()).round(6).tolist()
    [0.575, -1.125]
    """
    total, *_ = _parts(quality, latency_ms, cost_usd, is_error.astype(np.float64), objective)
    return total
