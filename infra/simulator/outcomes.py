"""Scoring a slice: from chosen routes and shared noise to status, latency, cost, quality and reward.

This is the simulator's physics. It is vectorised over the slice's requests,
and it is the only place realised outcomes are computed, for the cheap and the
record path alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infra.simulator.traffic import TrafficSlice
from infra.simulator.truth import Truth, TruthState
from processors.reward import reward_arrays

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

OK, ERROR, TIMEOUT, REJECTED = 0, 1, 2, 3
# Why a request failed: drives the log template and the record's error_type.
CAUSE_NONE, CAUSE_UPSTREAM, CAUSE_RATE_LIMIT, CAUSE_TIMEOUT, CAUSE_SHED, CAUSE_NO_ROUTE, CAUSE_UNSUPPORTED = range(7)
CAUSE_NAMES = ("", "upstream_error", "rate_limit", "timeout", "load_shed", "no_route", "unsupported_task")


@dataclass
class SliceOutcomes:
    """One slice's results. ``route == -1`` for rejected requests.

    Observable by policies: ``route``, ``status``, ``cause``, ``latency_ms``,
    ``cost_usd`` (what a gateway logs). ``quality`` and ``reward`` are truth.
    """

    traffic: TrafficSlice
    route: I64
    variant: I64
    version: I64
    status: I64
    cause: I64
    latency_ms: F64
    cost_usd: F64
    quality: F64
    reward: F64
    privacy_violation: Mask
    utilisation: F64


def score_slice(truth: Truth, state: TruthState, traffic: TrafficSlice, route: I64, variant: I64,
                version: I64, shed: Mask, utilisation: F64) -> SliceOutcomes:
    """Realise the outcome of every request of ``traffic`` sent to ``route`` (-1: rejected)."""
    n = traffic.n
    served = (route >= 0) & ~shed
    r = np.where(served, route, 0)
    wf = traffic.workflow
    capable = truth.capable[r, traffic.task]
    p_err_r, p_to_r = truth.failure_rates(state, utilisation)
    over = np.where(utilisation > 1.0, 1.0 - 1.0 / np.maximum(utilisation, 1e-9), 0.0)
    p_err = np.clip(p_err_r[r] + version * state.canary_err[wf], 0.0, 1.0)
    u = traffic.u_fail
    is_error = u < p_err
    is_timeout = ~is_error & (u < p_err + p_to_r[r])
    status = np.where(is_error, ERROR, np.where(is_timeout, TIMEOUT, OK))
    cause = np.where(is_error, np.where(u < over[r], CAUSE_RATE_LIMIT, CAUSE_UPSTREAM),
                     np.where(is_timeout, CAUSE_TIMEOUT, CAUSE_NONE))
    unsupported = served & ~capable
    status = np.where(unsupported, ERROR, status)
    cause = np.where(unsupported, CAUSE_UNSUPPORTED, cause)
    status = np.where(served, status, REJECTED)
    cause = np.where(served, cause, np.where(shed, CAUSE_SHED, CAUSE_NO_ROUTE))

    lat_ok = (truth.median[r] * state.lat_mult[r] * truth.load_factor(utilisation)[r]
              * np.exp(truth.sigma[r] * traffic.z_latency))
    latency = np.select([status == OK, status == ERROR, status == TIMEOUT], [lat_ok, 0.1 * lat_ok, truth.timeout_ms[r]], 0.0)
    c_in = traffic.tokens_in * truth.cin[r] / 1000.0 * state.cost_mult[r]
    c_out = traffic.tokens_out * truth.cout[r] / 1000.0 * state.cost_mult[r]
    cost = np.select([status == OK, status == TIMEOUT], [c_in + c_out, c_in], 0.0)

    effects = np.zeros(n)
    for w, eff in enumerate(truth.variant_effects):
        mask = wf == w
        effects[mask] = eff[np.minimum(variant[mask], len(eff) - 1)]
    noise = truth.scenario.feedback.quality_noise * traffic.z_quality
    q_true = truth.quality[r, traffic.task] + state.q_add[r] + effects + version * state.canary_q[wf] + noise
    if truth.q_per_doubling.any():
        q_true = q_true + truth.q_per_doubling[r] * np.log2(traffic.tokens_in / truth.tokens_in_median[traffic.task])
    quality = np.where(status == OK, np.clip(q_true, 0.0, 1.0), 0.0)
    failed = status != OK
    reward = np.empty(n)
    for w, objective in enumerate(truth.objectives):
        mask = wf == w
        reward[mask] = reward_arrays(quality[mask], latency[mask], cost[mask], failed[mask], objective)
    violation = served & (truth.max_privacy[r] < traffic.privacy)
    return SliceOutcomes(traffic, np.where(served, route, -1), variant, version, status, cause,
                         latency, cost, quality, reward, violation, utilisation)
