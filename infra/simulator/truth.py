"""The ground truth as arrays: routes compiled to numpy vectors and the timeline's effect at a time.

Every route of every workflow gets a global index ``r``; per-route numbers are
vectors over ``r`` so a slice of requests is scored with fancy indexing.
``TruthState`` is what the timeline makes of the routes at one moment; the
oracle's ``expected_reward`` reads it (and only the oracle and ``static-best``
may: other policies learn from observed events).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infra.simulator.scenario import Scenario, TimelineEvent
from processors.reward import reward_arrays
from schemas.records import PRIVACY_RANK, Objective, PrivacyLevel

F64 = npt.NDArray[np.float64]
PRIVACY_LEVELS = tuple(PrivacyLevel)


@dataclass
class TruthState:
    """Multipliers and offsets the timeline applies to every route, plus canary state per workflow."""

    lat_mult: F64
    q_add: F64
    err_add: F64
    to_add: F64
    cost_mult: F64
    cap_mult: F64
    canary_share: F64
    canary_q: F64
    canary_err: F64
    available: npt.NDArray[np.bool_] | None = None
    tenant_shares: dict[int, dict[str, float]] | None = None


class Truth:
    """A scenario compiled to arrays (capacities scaled to the run's rate)."""

    def __init__(self, scenario: Scenario, rate: float) -> None:
        self.scenario, self.rate = scenario, rate
        self.tasks = tuple(t.name for t in scenario.tasks)
        pairs = [(w, route) for w, wf in enumerate(scenario.workflows) for route in wf.routes]
        self.route_wf = np.array([w for w, _ in pairs], dtype=np.int64)
        self.route_names = tuple(route.name for _, route in pairs)
        self.routes = tuple(route for _, route in pairs)
        vec = lambda f: np.array([f(r) for _, r in pairs], dtype=np.float64)  # noqa: E731
        self.max_privacy = np.array([PRIVACY_RANK[r.max_privacy] for _, r in pairs], dtype=np.int64)
        self.cin, self.cout = vec(lambda r: r.cost_per_1k_in_usd), vec(lambda r: r.cost_per_1k_out_usd)
        self.median, self.sigma = vec(lambda r: r.latency.median_ms), vec(lambda r: r.latency.sigma)
        self.load_coef, self.u_max = vec(lambda r: r.latency.load_coef), vec(lambda r: r.latency.u_max)
        self.err, self.to, self.timeout_ms = vec(lambda r: r.error_rate), vec(lambda r: r.timeout_rate), vec(lambda r: r.timeout_ms)
        # Capacities scale with --rate so an overridden rate keeps the scenario's utilisation.
        self.capacity = vec(lambda r: r.capacity_rps) * (rate / scenario.rate)
        self.quality = np.array([[r.quality.get(t, np.nan) for t in self.tasks] for _, r in pairs], dtype=np.float64)
        self.capable = ~np.isnan(self.quality)
        self.quality = np.nan_to_num(self.quality)
        self.q_per_doubling = vec(lambda r: r.quality_per_doubling)
        self.tokens_in_median = np.array([t.tokens_in for t in scenario.tasks])
        self.tokens_in_mean = np.array([t.tokens_in * np.exp(t.tokens_sigma**2 / 2) for t in scenario.tasks])
        self.tokens_out_mean = np.array([t.tokens_out * np.exp(t.tokens_sigma**2 / 2) for t in scenario.tasks])
        self.wf_routes = [np.flatnonzero(self.route_wf == w) for w in range(len(scenario.workflows))]
        self.variant_effects = [np.array([v.effect for v in wf.variants] or [0.0]) for wf in scenario.workflows]
        self.objectives = tuple(wf.objective for wf in scenario.workflows)

    def route_index(self, name: str) -> list[int]:
        """Global indices of every workflow's route called ``name``."""
        return [i for i, n in enumerate(self.route_names) if n == name]

    def workflow_index(self, name: str) -> int | None:
        """Index of the workflow called ``name``, or ``None``."""
        names = [wf.name for wf in self.scenario.workflows]
        return names.index(name) if name in names else None

    def state_at(self, t_s: float) -> TruthState:
        """Apply every timeline event to the base truth at scenario time ``t_s``."""
        n_r, n_w = len(self.routes), len(self.scenario.workflows)
        s = TruthState(np.ones(n_r), np.zeros(n_r), np.zeros(n_r), np.zeros(n_r), np.ones(n_r), np.ones(n_r),
                       np.zeros(n_w), np.zeros(n_w), np.zeros(n_w), np.ones(n_r, dtype=bool), {})
        for event in self.scenario.timeline:
            if t_s >= event.start_s and (event.end_s is None or t_s < event.end_s):
                self._apply(event, t_s, s)
        return s

    def _apply(self, event: TimelineEvent, t_s: float, s: TruthState) -> None:
        p = event.params
        if event.kind == "canary":
            w = self.workflow_index(event.target)
            steps = tuple(p.get("steps", (0.05, 0.25, 0.5, 1.0)))  # type: ignore[arg-type]
            step = min(int((t_s - event.start_s) // float(p.get("step_duration", 600.0))), len(steps) - 1)  # type: ignore[arg-type]
            s.canary_share[w], s.canary_q[w] = float(steps[step]), float(p.get("quality_delta", 0.0))  # type: ignore[arg-type]
            s.canary_err[w] = float(p.get("error_rate_add", 0.0))  # type: ignore[arg-type]
            return
        if event.kind == "tenant_mix":
            w = self.workflow_index(event.target)
            if w is not None and s.tenant_shares is not None:
                s.tenant_shares[w] = {k: float(v) for k, v in p.items()}  # type: ignore[arg-type]
            return
        idx = self.route_index(event.target)
        get = lambda key, default: float(p.get(key, default))  # type: ignore[arg-type] # noqa: E731
        if event.kind == "degradation":
            ramp = max(get("ramp", 1.0), 1e-9)
            frac = min((t_s - event.start_s) / ramp, 1.0)
            s.lat_mult[idx] *= 1.0 + (get("latency_mult", 1.0) - 1.0) * frac
            s.q_add[idx] += get("quality_delta", 0.0) * frac
            s.err_add[idx] += get("error_rate_add", 0.0) * frac
        elif event.kind == "outage":
            s.err_add[idx] += get("error_rate", 0.9)
            s.to_add[idx] += get("timeout_rate", 0.0)
        elif event.kind == "price_change":
            s.cost_mult[idx] *= get("cost_mult", 1.0)
        elif event.kind == "capacity_squeeze":
            s.cap_mult[idx] *= get("capacity_mult", 0.5)
        elif event.kind == "unavailable" and s.available is not None:
            s.available[idx] = False

    def rate_at(self, t_s: float, base_rate: float) -> float:
        """Arrival rate (requests/s) at scenario time ``t_s``: base x daily curve x spikes."""
        load = self.scenario.load
        hour = ((self.scenario.start_ms / 1000.0 + t_s) / 3600.0) % 24.0
        rate = base_rate * (1.0 + load.daily_amplitude * np.cos(2 * np.pi * (hour - load.peak_hour) / 24.0))
        for spike in load.spikes:
            if spike.start_s <= t_s < spike.start_s + spike.duration_s:
                rate *= spike.multiplier
        return float(rate)

    def load_factor(self, utilisation: F64) -> F64:
        """Latency multiplier per route at the given utilisation vector."""
        u = np.minimum(np.maximum(utilisation, 0.0), self.u_max)
        return 1.0 + self.load_coef * u / (1.0 - u)

    def failure_rates(self, s: TruthState, utilisation: F64) -> tuple[F64, F64]:
        """Error and timeout probabilities per route (errors include 429s past capacity)."""
        over = np.where(utilisation > 1.0, 1.0 - 1.0 / np.maximum(utilisation, 1e-9), 0.0)
        p_err = np.clip(self.err + s.err_add + over, 0.0, 1.0)
        return p_err, np.clip(self.to + s.to_add, 0.0, 1.0 - p_err)

    def reward_curve(self, s: TruthState, routes: npt.NDArray[np.int64], task: int, quality_extra: float,
                     log2_tokens: float = 0.0) -> "RewardCurve":
        """Expected reward of a ``task`` request on ``routes`` as a function of their utilisation.

        ``log2_tokens``: log2 of the request's tokens_in over its task's median (prompt-length sensitivity).
        """
        wf = int(self.route_wf[routes[0]])
        c_in = self.tokens_in_mean[task] * self.cin[routes] / 1000.0 * s.cost_mult[routes]
        c_out = self.tokens_out_mean[task] * self.cout[routes] / 1000.0 * s.cost_mult[routes]
        return RewardCurve(
            base_err=self.err[routes] + s.err_add[routes] + s.canary_share[wf] * s.canary_err[wf],
            p_to=self.to[routes] + s.to_add[routes],
            quality=np.minimum(np.maximum(self.quality[routes, task] + s.q_add[routes] + quality_extra
                                          + self.q_per_doubling[routes] * log2_tokens, 0.0), 1.0),
            latency_ms=self.median[routes] * s.lat_mult[routes] * np.exp(self.sigma[routes] ** 2 / 2),
            timeout_ms=self.timeout_ms[routes], cost_ok=c_in + c_out, cost_timeout=c_in,
            load_coef=self.load_coef[routes], u_max=self.u_max[routes], objective=self.objectives[wf])

    def expected_reward(self, s: TruthState, routes: npt.NDArray[np.int64], task: int, quality_extra: float,
                        utilisation: F64) -> F64:
        """True expected reward of a ``task`` request on each of ``routes`` at ``utilisation`` (over all routes)."""
        return self.reward_curve(s, routes, task, quality_extra).at(utilisation[..., routes])


@dataclass
class RewardCurve:
    """Load-independent parts of a request's expected reward on some routes; ``at(u)`` adds the load.

    Uses the same ``processors.reward`` formula as the realised reward, on the
    expectations of quality, latency (lognormal mean) and cost; past capacity
    the 429 share ``1 - 1/u`` joins the errors.
    """

    base_err: F64
    p_to: F64
    quality: F64
    latency_ms: F64
    timeout_ms: F64
    cost_ok: F64
    cost_timeout: F64
    load_coef: F64
    u_max: F64
    objective: Objective

    def at(self, u: F64) -> F64:
        """Expected reward per route at utilisation ``u`` (shape ``(..., routes)``)."""
        over = np.where(u > 1.0, 1.0 - 1.0 / np.maximum(u, 1e-9), 0.0)
        p_err = np.minimum(np.maximum(self.base_err + over, 0.0), 1.0)
        p_to = np.minimum(np.maximum(self.p_to, 0.0), 1.0 - p_err)
        ok = 1.0 - p_err - p_to
        u_c = np.minimum(np.maximum(u, 0.0), self.u_max)
        lat_ok = self.latency_ms * (1.0 + self.load_coef * u_c / (1.0 - u_c))
        latency = ok * lat_ok + p_err * 0.1 * lat_ok + p_to * self.timeout_ms
        cost = ok * self.cost_ok + p_to * self.cost_timeout
        # E[quality * (1 - error)] = ok * q: pass it as quality with no error, then add the error mass.
        base = reward_arrays(ok * self.quality, latency, cost, np.zeros(np.shape(ok), dtype=bool), self.objective)
        return base - self.objective.error_weight * (p_err + p_to)  # type: ignore[no-any-return]
