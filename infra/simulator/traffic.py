"""Seeded traffic: a slice's arrivals, contexts and noise draws, identical whatever the policy.

Slice ``k`` of a run with seed ``s`` draws from its own generator,
``SeedSequence(s, spawn_key=(k,))``: arrivals, contexts and every per-request
noise (latency, failure, quality, routing and variant uniforms) depend only on
``(s, k)``, never on what a policy chose before. Policies are therefore
compared on the very same requests with common random numbers. Feedback draws
come from a second child stream so the cheap path can skip them without
shifting any other draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infra.simulator.scenario import FEEDBACK_KINDS
from infra.simulator.truth import PRIVACY_LEVELS, Truth

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class TrafficSlice:
    """The requests arriving in one slice, with the noise that decides their fate."""

    index: int
    first_request: int
    ts_ms: I64
    workflow: I64
    tenant: I64
    task: I64
    privacy: I64
    priority: I64
    tokens_in: I64
    tokens_out: I64
    z_latency: F64
    z_quality: F64
    u_fail: F64
    u_route: F64
    u_variant: F64
    u_version: F64
    u_shed: F64
    feedback_seed: np.random.SeedSequence

    @property
    def n(self) -> int:
        """Number of requests in the slice."""
        return len(self.ts_ms)

    def feedback_draws(self) -> tuple[F64, F64, F64]:
        """Per kind and request: a selection uniform, a delay normal and a value normal."""
        rng = np.random.Generator(np.random.PCG64(self.feedback_seed))
        shape = (len(FEEDBACK_KINDS), self.n)
        return rng.random(shape), rng.standard_normal(shape), rng.standard_normal(shape)


class TrafficGenerator:
    """Draws slices for one scenario, seed and base rate."""

    def __init__(self, truth: Truth, seed: int, rate: float) -> None:
        self.truth, self.seed, self.rate = truth, seed, rate
        sc = truth.scenario
        combos = [(w, t, wf.share * tenant.share / sum(x.share for x in wf.tenants))
                  for w, wf in enumerate(sc.workflows) for t, tenant in enumerate(wf.tenants)]
        weights = np.array([c[2] for c in combos])
        self.combo_cum = np.cumsum(weights / weights.sum())
        self._combos = combos
        self._has_mix = any(e.kind == "tenant_mix" for e in sc.timeline)
        self.combo_wf = np.array([c[0] for c in combos], dtype=np.int64)
        self.combo_tenant = np.array([c[1] for c in combos], dtype=np.int64)
        tenants = [sc.workflows[w].tenants[t] for w, t, _ in combos]
        self.task_cum = self._cum([[ten.tasks.get(name, 0.0) for name in truth.tasks] for ten in tenants])
        self.privacy_cum = self._cum([[ten.privacy.get(level, 0.0) for level in PRIVACY_LEVELS] for ten in tenants])
        prios = sorted({p for ten in tenants for p in ten.priority})
        self.priorities = np.array(prios, dtype=np.int64)
        self.priority_cum = self._cum([[ten.priority.get(p, 0.0) for p in prios] for ten in tenants])
        self.tok_in = np.array([t.tokens_in for t in sc.tasks])
        self.tok_out = np.array([t.tokens_out for t in sc.tasks])
        self.tok_sigma = np.array([t.tokens_sigma for t in sc.tasks])
        self._next_request = 0
        self._carry = 0.0

    def _combo_cum_at(self, t_s: float) -> F64:
        """Cumulative (workflow, tenant) shares at ``t_s`` with any ``tenant_mix`` event applied."""
        sc = self.truth.scenario
        mixes = self.truth.state_at(t_s).tenant_shares or {}
        weights = []
        for w, t, base in self._combos:
            wf = sc.workflows[w]
            mix = mixes.get(w)
            if mix is None:
                weights.append(base)
            else:
                total = sum(mix.get(x.name, 0.0) for x in wf.tenants) or 1.0
                weights.append(wf.share * mix.get(wf.tenants[t].name, 0.0) / total)
        arr = np.array(weights)
        return np.cumsum(arr / arr.sum())

    @staticmethod
    def _cum(rows: list[list[float]]) -> F64:
        arr = np.array(rows, dtype=np.float64)
        return np.cumsum(arr / arr.sum(axis=1, keepdims=True), axis=1)

    @staticmethod
    def _pick(cum: F64, rows: I64, u: F64) -> I64:
        # Categorical draw per request from its own row of cumulative probabilities.
        return np.minimum((u[:, None] > cum[rows]).sum(axis=1), cum.shape[1] - 1).astype(np.int64)

    def draw(self, k: int) -> TrafficSlice:
        """Draw slice ``k`` (slices must be drawn in order: request indices accumulate)."""
        sc = self.truth.scenario
        slice_s = sc.slice_ms / 1000.0
        traffic_seq, feedback_seq = np.random.SeedSequence(self.seed, spawn_key=(k,)).spawn(2)
        rng = np.random.Generator(np.random.PCG64(traffic_seq))
        expected = self.truth.rate_at((k + 0.5) * slice_s, self.rate) * slice_s
        if sc.load.arrival == "even":
            # Deterministic count with carry, evenly spaced: used to calibrate load tests.
            self._carry += expected
            n = int(self._carry + 1e-9)
            self._carry -= n
            offsets = (np.arange(n) + 0.5) / max(n, 1)
        else:
            n = int(rng.poisson(expected))
            offsets = np.sort(rng.random(n))
        ts = sc.start_ms + k * sc.slice_ms + (offsets * sc.slice_ms).astype(np.int64)
        u = rng.random((5, n))
        combo_cum = self._combo_cum_at((k + 0.5) * slice_s) if self._has_mix else self.combo_cum
        combo = np.minimum(np.searchsorted(combo_cum, u[0], side="right"), len(combo_cum) - 1)
        task = self._pick(self.task_cum, combo, u[1])
        z = rng.standard_normal((4, n))
        tokens_in = np.maximum(1, self.tok_in[task] * np.exp(self.tok_sigma[task] * z[0])).astype(np.int64)
        tokens_out = np.maximum(1, self.tok_out[task] * np.exp(self.tok_sigma[task] * z[1])).astype(np.int64)
        uu = rng.random((5, n))
        first, self._next_request = self._next_request, self._next_request + n
        return TrafficSlice(
            k, first, ts, self.combo_wf[combo], self.combo_tenant[combo], task,
            self._pick(self.privacy_cum, combo, u[2]), self.priorities[self._pick(self.priority_cum, combo, u[3])],
            tokens_in, tokens_out, z[2], z[3], u[4], uu[0], uu[1], uu[2], uu[3], feedback_seq)
