"""Baseline routing policies (cheap path) and the factory that names every policy.

Baselines see only what a gateway sees: the request's context, the published
prices and the observed latency/status of past requests. They all respect the
hard constraints through ``SliceView.allowed`` (privacy, capability, open
circuits).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import numpy.typing as npt

from infra.simulator.errors import SimulatorError
from infra.simulator.outcomes import OK, SliceOutcomes
from infra.simulator.protocols import Action, BatchPolicy, Policy, SliceView, pick_allowed

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def argbest(allowed: npt.NDArray[np.bool_], score: F64) -> I64:
    """Per request, the allowed route with the highest ``score`` (rows) or -1 when none is allowed.

    >>> argbest(np.array([[True, True], [False, False]]), np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [1, -1]
    """
    masked = np.where(allowed, score, -np.inf)
    return np.where(allowed.any(axis=1), np.argmax(masked, axis=1), -1).astype(np.int64)


class _Baseline:
    """Shared no-op parts of the stateless baselines."""

    name = "baseline"
    impl = "baseline"

    def observe_batch(self, outcomes: SliceOutcomes) -> Sequence[Action]:
        """Stateless baselines learn nothing."""
        return ()


class RandomPolicy(_Baseline):
    """Uniformly random among the allowed routes (using the request's own routing uniform)."""

    name = impl = "random"

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Pick uniformly among allowed routes."""
        return pick_allowed(view.allowed, view.traffic.u_route), None


class RoundRobinPolicy(_Baseline):
    """Cycles through each request's allowed routes."""

    name = impl = "round-robin"

    def __init__(self) -> None:
        self._counter = 0

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Send request ``i`` to allowed route number ``(counter + i) mod count``."""
        counts = np.maximum(view.allowed.sum(axis=1), 1)
        turn = (self._counter + np.arange(view.traffic.n)) % counts
        self._counter += view.traffic.n
        return pick_allowed(view.allowed, (turn + 0.5) / counts), None


class FailureCooldown:
    """Skip a route for ``cooldown_s`` after ``failures`` consecutive failed requests (a gateway's breaker)."""

    def __init__(self, failures: int = 3, cooldown_s: float = 30.0) -> None:
        self.failures, self.cooldown_ms = failures, int(cooldown_s * 1000)
        self._streak: dict[int, int] = {}
        self._cool_until: dict[int, int] = {}

    def usable(self, allowed: npt.NDArray[np.bool_], now_ms: int) -> npt.NDArray[np.bool_]:
        """``allowed`` minus cooling routes, except for requests that would be left with none."""
        cooling = [r for r, until in self._cool_until.items() if until > now_ms]
        if not cooling:
            return allowed
        warm = allowed.copy()
        warm[:, cooling] = False
        return np.where(warm.any(axis=1)[:, None], warm, allowed)

    def observe(self, route: int, ok: npt.NDArray[np.bool_], now_ms: int) -> None:
        """Fold one route's request results (in order) into its failure streak."""
        last_ok = np.flatnonzero(ok)
        streak = len(ok) - 1 - int(last_ok[-1]) if len(last_ok) else self._streak.get(route, 0) + len(ok)
        if streak >= self.failures:
            self._cool_until[route], streak = now_ms + self.cooldown_ms, 0
        self._streak[route] = streak


class CostFirstPolicy(_Baseline):
    """The cheapest allowed route at published prices, with the gateway's failure cooldown."""

    name = impl = "cost-first"

    def __init__(self) -> None:
        self._cooldown = FailureCooldown()
        self._now_ms = 0

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Minimise the request's price (prices are public: they are in the workflow definition)."""
        t, tr = view.truth, view.traffic
        self._now_ms = view.now_ms
        price = (tr.tokens_in[:, None] * t.cin[None, :] + tr.tokens_out[:, None] * t.cout[None, :]) * view.state.cost_mult
        return argbest(self._cooldown.usable(view.allowed, view.now_ms), -price), None

    def observe_batch(self, outcomes: SliceOutcomes) -> Sequence[Action]:
        """Track failure streaks per route."""
        for r in np.unique(outcomes.route[outcomes.route >= 0]).tolist():
            self._cooldown.observe(r, outcomes.status[outcomes.route == r] == OK, self._now_ms)
        return ()


class LeastLatencyPolicy(_Baseline):
    """What LLM gateways do today: lowest EWMA of observed latency, cooldown after K straight failures.

    Args:
        alpha: EWMA weight of each new observation.
        failures: Consecutive failures that put a route in cooldown.
        cooldown_s: How long a route is skipped after that.
    """

    name = impl = "least-latency"

    def __init__(self, alpha: float = 0.1, failures: int = 3, cooldown_s: float = 30.0) -> None:
        self.alpha = alpha
        self._cooldown = FailureCooldown(failures, cooldown_s)
        self._ewma: F64 | None = None
        self._now_ms = 0

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Argmin of the latency EWMA over allowed routes not cooling down (unseen routes first)."""
        if self._ewma is None:
            self._ewma = np.zeros(len(view.truth.routes))
        self._now_ms = view.now_ms
        usable = self._cooldown.usable(view.allowed, view.now_ms)
        return argbest(usable, np.broadcast_to(-self._ewma, usable.shape)), None

    def observe_batch(self, outcomes: SliceOutcomes) -> Sequence[Action]:
        """Fold each route's observed latencies, in order, into its EWMA; track failure streaks."""
        assert self._ewma is not None
        for r in np.unique(outcomes.route[outcomes.route >= 0]).tolist():
            mask = outcomes.route == r
            lat = outcomes.latency_ms[mask]
            m = len(lat)
            weights = self.alpha * (1 - self.alpha) ** np.arange(m - 1, -1, -1)
            self._ewma[r] = (1 - self.alpha) ** m * self._ewma[r] + float(weights @ lat) if self._ewma[r] else float(lat.mean())
            self._cooldown.observe(r, outcomes.status[mask] == OK, self._now_ms)
        return ()


BASELINES = ("random", "round-robin", "static-best", "cost-first", "least-latency", "oracle")
POLICIES = BASELINES + ("loopwise", "loopwise-fallback")


def make_policy(name: str, seed: int = 1) -> BatchPolicy | Policy:
    """Build a policy by name: one of ``POLICIES``.

    ``loopwise`` runs loopwise's routing processors (``infra.simulator.loopwise_policy``);
    ``loopwise-fallback`` is the documented epsilon-greedy stand-in (``infra.simulator.fallback``).
    """
    from infra.simulator.fallback import EpsilonGreedyFallback
    from infra.simulator.loopwise_policy import loopwise_policy
    from infra.simulator.oracle import OraclePolicy, StaticBestPolicy

    factories = {"random": RandomPolicy, "round-robin": RoundRobinPolicy, "cost-first": CostFirstPolicy,
                 "least-latency": LeastLatencyPolicy, "static-best": StaticBestPolicy, "oracle": OraclePolicy}
    if name == "loopwise":
        return loopwise_policy(seed)
    if name == "loopwise-fallback":
        return EpsilonGreedyFallback(seed)
    if name not in factories:
        raise SimulatorError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}")
    return factories[name]()  # type: ignore[no-any-return]
