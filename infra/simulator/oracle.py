"""Policies that read the hidden truth: the oracle (every moment) and static-best (hindsight average).

They bound what any learning policy can reach. Both respect the hard
constraints exactly like the baselines (``SliceView.allowed``).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import numpy.typing as npt

from infra.simulator.outcomes import SliceOutcomes
from infra.simulator.policies import argbest
from infra.simulator.protocols import Action, SliceView
from infra.simulator.truth import RewardCurve
from schemas.records import Command

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_BLOCKS = 4


#: Prompt-length buckets per doubling of tokens_in (only when some route's quality depends on it).
_TOKEN_STEPS = 2
_TOKEN_BUCKETS = 17


def _token_bucket(view: SliceView) -> I64:
    t, tr = view.truth, view.traffic
    if not t.q_per_doubling.any():
        return np.zeros(tr.n, dtype=np.int64)
    log2 = np.log2(tr.tokens_in / t.tokens_in_median[tr.task])
    return np.clip(np.round(log2 * _TOKEN_STEPS), -(_TOKEN_BUCKETS // 2), _TOKEN_BUCKETS // 2).astype(np.int64) + _TOKEN_BUCKETS // 2


def _group_keys(view: SliceView) -> I64:
    tr = view.traffic
    return ((tr.workflow * len(view.truth.tasks) + tr.task) * 3 + tr.privacy) * _TOKEN_BUCKETS + _token_bucket(view)


_IMPROVE_PASSES = 2


class OraclePolicy:
    """Knows every route's true expected reward now, including the load its own choices add.

    Each slice, requests are grouped by (workflow, task, privacy); groups are
    handed out in blocks, each block to the allowed route with the best true
    expected reward at the utilisation that block would bring, counting the
    harm extra load does to requests already placed there. It always picks a
    workflow's best prompt variant and rolls back a canary it knows is worse.
    """

    name = impl = "oracle"

    def __init__(self) -> None:
        self._rolled_back: set[int] = set()
        self._pending: list[Command] = []

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Greedy load-aware allocation by true expected reward."""
        t, s, tr = view.truth, view.state, view.traffic
        route = np.full(tr.n, -1, dtype=np.int64)
        variant = np.array([int(np.argmax(t.variant_effects[w])) for w in tr.workflow.tolist()], dtype=np.int64)
        self._check_canary(view)
        if tr.n == 0:
            return route, variant
        keys = _group_keys(view)
        order = np.argsort(keys, kind="stable")
        _, starts = np.unique(keys[order], return_index=True)
        groups = np.split(order, starts[1:])
        blocks = [np.array_split(g, min(_BLOCKS, len(g))) for g in groups]
        counts = np.zeros(len(t.routes))
        to_rate = (1.0 - view.load_decay) / view.slice_s / view.capacity
        curves: dict[tuple[int, int, int], RewardCurve] = {}
        self._buckets = _token_bucket(view)
        placed: list[tuple[I64, int]] = []
        for b in range(_BLOCKS):
            for group_blocks in blocks:
                if b < len(group_blocks):
                    idx = group_blocks[b]
                    pick = self._best(view, curves, idx, counts, to_rate)
                    if pick >= 0:
                        route[idx] = pick
                        counts[pick] += len(idx)
                        placed.append((idx, pick))
        # Greedy order decides who gets scarce capacity first; best-response passes (each block
        # re-placed given all the others) move it to whoever gains most from it.
        for _ in range(_IMPROVE_PASSES):
            for i, (idx, pick) in enumerate(placed):
                counts[pick] -= len(idx)
                better = self._best(view, curves, idx, counts, to_rate)
                counts[better] += len(idx)
                route[idx] = better
                placed[i] = (idx, better)
        return route, variant

    def _best(self, view: SliceView, curves: dict[tuple[int, int, int], RewardCurve], idx: I64, counts: F64,
              to_rate: F64) -> int:
        t, s, first = view.truth, view.state, int(idx[0])
        w, task = int(view.traffic.workflow[first]), int(view.traffic.task[first])
        routes = t.wf_routes[w]
        allowed = view.allowed[first, routes]
        if not allowed.any():
            return -1
        bucket = int(self._buckets[first])
        curve = curves.get((w, task, bucket))
        if curve is None:
            extra = float(t.variant_effects[w].max() + s.canary_share[w] * s.canary_q[w])
            log2_tokens = (bucket - _TOKEN_BUCKETS // 2) / _TOKEN_STEPS
            curve = curves[(w, task, bucket)] = t.reward_curve(s, routes, task, extra, log2_tokens)
        u_now = view.utilisation[routes] + counts[routes] * to_rate[routes]
        now, nxt = curve.at(np.stack([u_now, u_now + len(idx) * to_rate[routes]]))
        # Requests already placed on a route this slice get slower when it gets busier.
        value = nxt * len(idx) - counts[routes] * (now - nxt)
        return int(routes[np.argmax(np.where(allowed, value, -np.inf))])

    def _check_canary(self, view: SliceView) -> None:
        s = view.state
        for w, wf in enumerate(view.truth.scenario.workflows):
            is_worse = s.canary_q[w] < 0 or s.canary_err[w] > 0
            if s.canary_share[w] > 0 and is_worse and w not in self._rolled_back:
                self._rolled_back.add(w)
                digest = hashlib.blake2b(f"oracle-rollback-{wf.name}".encode(), digest_size=8).hexdigest()
                self._pending.append(Command(digest, view.now_ms, wf.name, "rollback", "oracle knows the canary is worse",
                                             "truth", view.now_ms + 3_600_000, "oracle", ""))

    def observe_batch(self, outcomes: SliceOutcomes) -> Sequence[Action]:
        """Hand over the rollbacks decided while choosing."""
        pending, self._pending = self._pending, []
        return pending


class StaticBestPolicy:
    """One route per (workflow, privacy level): the best on average over the whole run, chosen with hindsight.

    The average is the true expected reward over time samples of the run and
    over the workflow's task mix, at the load the route would carry if that
    privacy class went to it alone. A route that cannot serve some task of the
    class is replaced, for that task only, by the next best.
    """

    name = impl = "static-best"

    def __init__(self, samples: int = 24) -> None:
        self.samples = samples
        self._ranking: dict[tuple[int, int], list[int]] | None = None

    def _rank(self, view: SliceView) -> dict[tuple[int, int], list[int]]:
        t, sc = view.truth, view.truth.scenario
        ranking: dict[tuple[int, int], list[int]] = {}
        times = np.linspace(0.0, view.duration_s, self.samples, endpoint=False)
        for w, wf in enumerate(sc.workflows):
            share = wf.share / sum(x.share for x in sc.workflows)
            mix = np.zeros(len(t.tasks))
            for tenant in wf.tenants:
                mix += np.array([tenant.tasks.get(n, 0.0) for n in t.tasks]) / sum(tenant.tasks.values()) * tenant.share
            mix /= mix.sum()
            routes = t.wf_routes[w]
            for p in range(3):
                cand = routes[t.max_privacy[routes] >= p]
                score = np.zeros(len(cand))
                for ts in times:
                    s = t.state_at(float(ts))
                    u = np.zeros(len(t.routes))
                    u[cand] = t.rate_at(float(ts), t.rate) * share / (t.capacity[cand] * s.cap_mult[cand])
                    extra = float(t.variant_effects[w].mean())
                    for k, weight in enumerate(mix):
                        if weight > 0:
                            er = t.expected_reward(s, cand, k, extra, u) if len(cand) else score
                            score += weight * np.where(t.capable[cand, k], er, -10.0)
                ranking[(w, p)] = cand[np.argsort(-score, kind="stable")].tolist()
        return ranking

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Each request to its class's first-ranked route that it is allowed to use."""
        if self._ranking is None:
            self._ranking = self._rank(view)
            # Row (workflow, privacy): higher is preferred; argbest then takes the first allowed.
            n_routes = len(view.truth.routes)
            self._priority = np.full((len(view.truth.scenario.workflows) * 3, n_routes), -np.inf)
            for (w, p), ranked in self._ranking.items():
                self._priority[w * 3 + p, ranked] = n_routes - np.arange(len(ranked))
        tr = view.traffic
        return argbest(view.allowed, self._priority[tr.workflow * 3 + tr.privacy]), None

    def observe_batch(self, outcomes: SliceOutcomes) -> Sequence[Action]:
        """Static: learns nothing."""
        return ()

