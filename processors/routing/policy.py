"""The ``Router``: learns every route's reward online from outcomes and answers policies and per-request decisions.

One ``Router`` per loopwise worker. Statistics are keyed by workflow ×
segment × route (quality, cost) and workflow × route (latency, failures:
see ``segments``); all forget by event time. Every ``refresh_ms`` of event
time a segment's shares are recomputed: Thompson P(best) (or UCB) over the
reward posteriors of the routes the hard constraints allow, made safe by
``bandit.safe_shares``. ``decide`` samples one route from those shares,
skipping routes that are planned full, in a few microseconds.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from processors.routing.bandit import Exploration, safe_shares, thompson_shares, total_variation, ucb_shares
from processors.routing.budget import BudgetPacer, HardBudget
from processors.routing.constraints import Circuits, LoadMeter, exclusion, step_capacity_prices
from processors.routing.estimates import estimate_reward
from processors.routing.segments import (
    RouteLoad, SegmentRoute, SegmentState, WorkflowState, explain, rescale_costs, typical_cost_usd,
)
from processors.routing.shift import QualityShift
from processors.routing.state import restore_router, snapshot_router
from processors.workflows import segment_of
from schemas.records import (
    Anomaly, Command, Outcome, PrivacyLevel, RouteDecision, RouteProbability, RouteRequest, RoutingPolicy, Severity,
    SignalKind, Status, WorkflowDefinition,
)

MODEL = "loopwise-router v1"
#: Routes per workflow the fixed Monte Carlo draws cover (more are drawn on demand).
_MAX_ROUTES = 16
#: Under a hard budget a request needs this many times its expected cost left (costs vary with tokens).
_HARD_MARGIN = 3.0


def load_key(workflow: str, route: str) -> str:
    """The load meter's key: a route's ``capacity_rps`` is declared per workflow (its quota there),
    so the planned rate it is held to is that workflow's traffic on it."""
    return f"{workflow}\x1f{route}"


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How the router learns, explores and publishes (defaults measured with ``bench/routing.py``).

    The utilisation settings matter most. Measured reward_ratio (seed 1, 20
    req/s) for (capacity_target, headroom): steady 0.971 at (0.8, 0.9),
    0.975 at (0.7, 0.85), 0.994 at (0.6, 0.8), 0.993 at (0.5, 0.75) — where
    drift fell to 0.931 —, so (0.6, 0.8). Half-lives moved little: steady
    0.971 for 120 s or 300 s, outage 0.934 vs 0.914 (120 s forgets faster);
    quality half-life 900 s vs 1800 s: no difference past the third digit.

    Attributes:
        half_life_s: Memory of latency, cost and failures (event time).
        quality_half_life_s: Memory of quality (sparser and later than the rest, so longer).
        exploration: Thompson P(best) or UCB.
        draws: Monte Carlo draws per share computation (Thompson).
        ucb_c: Width of the UCB bound in standard errors.
        min_share: Floor per eligible route, so every route keeps being observed.
        max_new_share: Ceiling of a new or recovering route while others are known.
        confident_n: Effective observations (per segment) below which a route counts as new.
        refresh_ms: Event time between two share computations of a segment.
        headroom: Fraction of ``capacity_rps`` a route may be planned for (a hard cap in ``decide``).
        capacity_target: Planned utilisation above which a route's capacity gets a price.
        price_step: How fast that price moves, in reward per second per unit of excess utilisation.
        load_half_life_s: Memory of the planned request rate per route.
        prior_weight: Pseudo-observations the RouteSpec priors count for.
        drift_keep: Evidence kept by ``reset`` (a drift or critical anomaly).
        publish_tv: Total-variation change of shares that publishes a policy.
        heartbeat_s: Largest gap between two publications of a segment's policy.
        max_tracked: Requests remembered to never count one twice.
        pacing_gain: Largest change of log(cost multiplier) per minute when over or under budget.
        shift_min_weight: Quality evidence (effective observations) a segment's estimate needs before
            its residuals feed the quality-shift detectors (``processors.routing.shift``).
        shift_keep_weight: Evidence left behind a quality estimate moved by a detected shift.
        shift_note_s: How long a detected shift is listed in the policy's reasons.
    """

    half_life_s: float = 120.0
    quality_half_life_s: float = 900.0
    exploration: Exploration = Exploration.THOMPSON
    draws: int = 256
    ucb_c: float = 2.0
    min_share: float = 0.01
    max_new_share: float = 0.10
    confident_n: float = 20.0
    refresh_ms: int = 1_000
    headroom: float = 0.8
    capacity_target: float = 0.6
    price_step: float = 0.02
    load_half_life_s: float = 5.0
    prior_weight: float = 3.0
    drift_keep: float = 0.05
    publish_tv: float = 0.05
    heartbeat_s: float = 300.0
    max_tracked: int = 300_000
    pacing_gain: float = 3.0
    shift_min_weight: float = 30.0
    shift_keep_weight: float = 10.0
    shift_note_s: float = 1800.0


class Router:
    """Online routing with forgetting, safe exploration, budget pacing and hard constraints.

    Args:
        config: Learning, exploration and publication settings.
        seed: Seeds the Monte Carlo shares and the per-request draws.
    """

    def __init__(self, config: RouterConfig | None = None, seed: int = 1) -> None:
        self.config = config or RouterConfig()
        self.seed = seed
        self.model_version = f"{MODEL}/{self.config.exploration}/hl{self.config.half_life_s:g}s"
        self._np_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x207,)))
        self._rng = random.Random(seed)
        self._normals = self._np_rng.standard_normal((self.config.draws, _MAX_ROUTES))
        self.workflows: dict[str, WorkflowState] = {}
        self.segments: dict[tuple[str, str], SegmentState] = {}
        self.circuits = Circuits()
        self.load = LoadMeter(self.config.load_half_life_s * 1000.0)
        self.seen: dict[str, int] = {}  # request_id -> 1 provisional learned, insertion-ordered
        self.evicted_until_ms = -1
        self.version = 0
        #: Quality shifts detected: (ts_ms, workflow, route, segment or "", shift, outcomes since the change).
        self.shift_log: list[tuple[int, str, str, str, float, int]] = []

    # ------------------------------------------------------------------ inputs
    def update_workflow(self, definition: WorkflowDefinition) -> bool:
        """Take a (new version of a) workflow definition; True when it changed anything.

        New routes start from their priors; a route whose price changed has its
        cost estimates rescaled at once, so a repricing needs no relearning.
        """
        current = self.workflows.get(definition.workflow)
        if current is not None and (current.definition is definition or current.definition == definition):
            return False
        hl = self.config.half_life_s * 1000.0
        if current is None:
            current = WorkflowState(definition, {})
        else:
            rescale_costs(self.segments.values(), current.specs, definition)
            current.definition, current.specs = definition, {r.name: r for r in definition.routes}
        for route in definition.routes:
            if route.name not in current.loads:
                current.loads[route.name] = RouteLoad.prior(route, hl, self.config.prior_weight, definition.ts_ms)
        budget = definition.budget_usd_per_hour
        if budget is None:
            current.pacer = None
        elif current.pacer is None:
            current.pacer = BudgetPacer(budget, gain=self.config.pacing_gain)
        else:
            current.pacer.budget_usd_per_hour = budget
        if budget is None or definition.budget_mode != "hard":
            current.hard = None
        elif current.hard is None:
            current.hard = HardBudget(budget)
        else:
            current.hard.budget_usd_per_hour = budget
        self.workflows[definition.workflow] = current
        for seg in self.segments.values():
            if seg.workflow == definition.workflow:
                seg.is_dirty = True
        return True

    def learn(self, outcome: Outcome) -> bool:
        """Learn from one outcome; False when it taught nothing (unknown route, or already counted).

        Latency, cost and failure come from the provisional outcome (or from the
        final one if the provisional was never seen); quality only from a final
        outcome that carries feedback. Each request counts once for each.
        """
        wf = self.workflows.get(outcome.workflow)
        if wf is None or outcome.route not in wf.specs:
            return False
        is_known = outcome.request_id in self.seen or outcome.request_ts_ms <= self.evicted_until_ms
        if not outcome.is_final:
            if is_known:
                return False
            self._learn_served(wf, outcome)
            self._remember(outcome)
            return True
        if not is_known:
            self._learn_served(wf, outcome)
        self.seen.pop(outcome.request_id, None)
        if outcome.quality is None:
            return not is_known
        seg = self._segment(wf, outcome.segment)
        sr = seg.routes[outcome.route]
        if outcome.status is Status.OK and sr.quality.weight >= self.config.shift_min_weight:
            self._watch_quality(wf, seg, outcome, outcome.quality - sr.quality.mean)
        sr.quality.add(outcome.quality, outcome.request_ts_ms)
        return True

    def on_anomaly(self, anomaly: Anomaly) -> bool:
        """Reset a route's evidence on a drift or a critical anomaly of it; True when it was a known route."""
        if anomaly.kind is SignalKind.DRIFT or anomaly.severity is Severity.CRITICAL:
            return self.reset(anomaly.entity)
        return False

    def on_command(self, command: Command) -> bool:
        """Obey ``open_circuit`` / ``close_circuit`` remediation commands for a route (others are not routing's).

        A command awaiting a person's approval is not obeyed here: its approved copy is the application's to apply.
        """
        if command.is_dry_run or command.requires_approval:
            return False
        if command.action == "open_circuit":
            self.open_circuit(command.target, command.expires_ts_ms)
        elif command.action == "close_circuit":
            self.close_circuit(command.target)
        else:
            return False
        return True

    def open_circuit(self, route: str, until_ms: int) -> None:
        """Give ``route`` probability 0 and no decisions until ``until_ms``."""
        self.circuits.open(route, until_ms)
        self._dirty_route(route)

    def close_circuit(self, route: str) -> None:
        """Let ``route`` back in (as a recovering route: its share is bounded until it is known again)."""
        self.circuits.close(route)
        self.reset(route)

    def reset(self, route: str) -> bool:
        """Keep only ``drift_keep`` of the evidence about ``route`` everywhere: its next outcomes dominate."""
        keep, found = self.config.drift_keep, False
        for wf in self.workflows.values():
            if route in wf.loads:
                wf.loads[route].latency.shrink(keep)
                wf.loads[route].error.shrink(keep)
                found = True
        for seg in self.segments.values():
            if route in seg.routes:
                seg.routes[route].quality.shrink(keep)
                seg.routes[route].cost.shrink(keep)
        self._dirty_route(route)
        return found

    # ----------------------------------------------------------------- outputs
    def decide(self, request: RouteRequest, now_ms: int) -> RouteDecision:
        """Sample one route for one request under every hard constraint, with the reason."""
        wf = self.workflows.get(request.workflow)
        ctx = request.context
        if wf is None:
            return RouteDecision(request.request_id, now_ms, request.workflow, "", "", 0.0, 0, "no route: unknown workflow")
        seg = self._segment(wf, segment_of(ctx, wf.definition.context_keys))
        if seg.is_dirty or abs(now_ms - seg.computed_ms) >= self.config.refresh_ms:
            self._refresh(wf, seg, now_ms)
        candidates = self._eligible(wf, seg, str(ctx.privacy_level), ctx.task)
        headroom = self.config.headroom
        circuits = self.circuits
        weights: list[float] = []
        names: list[str] = []
        full: list[str] = []
        for name in candidates:
            if circuits.is_open(name, now_ms):
                continue
            cap = wf.specs[name].capacity_rps
            if cap is not None and self.load.rate(load_key(request.workflow, name), now_ms) >= headroom * cap:
                full.append(name)
                continue
            names.append(name)
            weights.append(seg.shares.get(name, 0.0))
        reason = "sampled from shares"
        if not names:
            if not full:
                return RouteDecision(request.request_id, now_ms, request.workflow, seg.segment, "", 0.0, seg.version,
                                     "no route: every route excluded by privacy, capability or an open circuit")
            # Everything is planned full: the least-loaded route sheds the least.
            names = [min(full, key=lambda n: self.load.rate(load_key(request.workflow, n), now_ms)
                         / (wf.specs[n].capacity_rps or 1.0))]
            weights, reason = [1.0], "every route at capacity: least loaded"
        elif full:
            # Thompson's next pick when the best is full is the runner-up, not the floors:
            # the full routes' share goes to the best remaining route by expected reward.
            best = next((n for n in seg.ranking if n in names), None)
            if best is not None:
                weights[names.index(best)] += sum(seg.shares.get(n, 0.0) for n in full)
            reason = f"capacity: {','.join(full)} planned full; their share to {best}"
        total = sum(weights)
        if total <= 0.0:
            weights, total = [1.0] * len(names), float(len(names))
        u = self._rng.random() * total
        pick = len(names) - 1
        for i, w in enumerate(weights):
            u -= w
            if u < 0.0:
                pick = i
                break
        route = names[pick]
        probability = weights[pick] / total
        if wf.hard is not None:
            # Hard budget: the request must fit in what the hour may still spend, with a margin for its variance.
            allowance = wf.hard.allowance(now_ms)
            cost = self._cost_estimate(wf, seg, route)
            if allowance < _HARD_MARGIN * cost:
                cheapest = min(names, key=lambda n: self._cost_estimate(wf, seg, n))
                cost = self._cost_estimate(wf, seg, cheapest)
                if allowance < _HARD_MARGIN * cost:
                    return RouteDecision(request.request_id, now_ms, request.workflow, seg.segment, "", 0.0, seg.version,
                                         f"no route: hard budget of ${wf.hard.budget_usd_per_hour:g}/h reached for this hour "
                                         f"(${max(allowance, 0.0):.4f} left, cheapest route {cheapest} costs ~${cost:.4f})")
                route, probability = cheapest, 1.0
                reason = (f"hard budget: ${max(allowance, 0.0):.4f} left of this hour's pro-rata "
                          f"${wf.hard.budget_usd_per_hour:g}/h; degraded to the cheapest route {cheapest}")
            wf.hard.reserve(request.request_id, now_ms, cost)
        self.load.add(load_key(request.workflow, route), now_ms)
        return RouteDecision(request.request_id, now_ms, request.workflow, seg.segment, route, probability,
                             seg.version, reason)

    def policy(self, workflow: str, segment: str, now_ms: int) -> RoutingPolicy | None:
        """The current policy of one segment (None for an unknown workflow)."""
        wf = self.workflows.get(workflow)
        if wf is None:
            return None
        seg = self._segment(wf, segment)
        if seg.is_dirty or abs(now_ms - seg.computed_ms) >= self.config.refresh_ms:
            self._refresh(wf, seg, now_ms)
        # Excluded routes are listed in ``excluded`` with the reason, not among the shares.
        routes = tuple(RouteProbability(name, seg.shares[name], est.mean, est.std, int(round(est.n_eff)))
                       for name, est in seg.estimates.items())
        return RoutingPolicy(workflow, segment, now_ms, seg.version, self.model_version, routes, seg.reasons,
                             dict(seg.excluded))

    def changed_policies(self, now_ms: int) -> list[RoutingPolicy]:
        """Policies that changed materially since last published (or are due a heartbeat); marks them published."""
        out = []
        heartbeat_ms = self.config.heartbeat_s * 1000.0
        for (workflow, segment), seg in self.segments.items():
            policy = self.policy(workflow, segment, now_ms)
            if policy is None:
                continue
            last = seg.published_shares
            is_due = (last is None or seg.excluded != seg.published_excluded
                      or now_ms - seg.published_ms >= heartbeat_ms
                      or total_variation([last.get(r, 0.0) for r in seg.shares], list(seg.shares.values()))
                      >= self.config.publish_tv)
            if is_due:
                seg.published_shares, seg.published_excluded = dict(seg.shares), dict(seg.excluded)
                seg.published_ms = now_ms
                out.append(policy)
        return out

    def snapshot(self) -> dict[str, Any]:
        """All learned state as plain JSON-able data (no pickle)."""
        return snapshot_router(self, asdict(self.config))

    @classmethod
    def restore(cls, state: dict[str, Any]) -> "Router":
        """A router that continues exactly where ``snapshot`` left off."""
        config = dict(state["config"])
        config["exploration"] = Exploration(config["exploration"])
        router = cls(RouterConfig(**config), int(state["seed"]))
        restore_router(router, state)
        return router

    # --------------------------------------------------------------- internals
    @staticmethod
    def _cost_estimate(wf: WorkflowState, seg: SegmentState, route: str) -> float:
        """Expected cost of one request of this segment on ``route`` (learned, else from its prices)."""
        sr = seg.routes.get(route)
        if sr is not None and sr.cost.weight > 1.0:
            return max(sr.cost.mean, 0.0)
        return typical_cost_usd(wf.specs[route])

    def _watch_quality(self, wf: WorkflowState, seg: SegmentState, outcome: Outcome, residual: float) -> None:
        """Feed one quality residual to the route's pooled and per-segment shift detectors; act on an alarm."""
        route = outcome.route
        pooled = wf.shifts.get(route)
        if pooled is None:
            pooled = wf.shifts[route] = QualityShift()
        alarm = pooled.observe(residual)
        local = seg.routes[route].shift.observe(residual)
        if alarm is not None:
            self._quality_shift(wf, route, None, alarm[0], alarm[1], outcome.ts_ms)
        elif local is not None:
            self._quality_shift(wf, route, seg, local[0], local[1], outcome.ts_ms)

    def _quality_shift(self, wf: WorkflowState, route: str, only: SegmentState | None, shift: float, n: int,
                       ts_ms: int) -> None:
        """Move the route's quality estimates by a detected shift; keep little evidence so new outcomes rule."""
        name = wf.definition.workflow
        targets = [only] if only is not None else [s for s in self.segments.values() if s.workflow == name]
        for seg in targets:
            sr = seg.routes.get(route)
            if sr is None:
                continue
            q = sr.quality
            q.mean = min(max(q.mean + shift, 0.0), 1.0)
            if q.weight > self.config.shift_keep_weight:
                q.shrink(self.config.shift_keep_weight / q.weight)
            sr.shift.reset()
            seg.is_dirty = True
        if only is None:
            wf.shifts[route].reset()
        wf.shift_notes[route] = [ts_ms, shift, n, only.segment if only is not None else ""]
        self.shift_log.append((ts_ms, name, route, only.segment if only is not None else "", shift, n))
        del self.shift_log[:-100]

    def _learn_served(self, wf: WorkflowState, outcome: Outcome) -> None:
        ts = outcome.request_ts_ms
        load = wf.loads[outcome.route]
        load.latency.add(outcome.latency_ms, ts)
        load.error.add(0.0 if outcome.status is Status.OK else 1.0, ts)
        self._segment(wf, outcome.segment).routes[outcome.route].cost.add(outcome.cost_usd, ts)
        if wf.pacer is not None:
            wf.pacer.add(outcome.cost_usd, ts)
        if wf.hard is not None:
            wf.hard.settle(outcome.request_id, ts, outcome.cost_usd)

    def _remember(self, outcome: Outcome) -> None:
        self.seen[outcome.request_id] = outcome.request_ts_ms
        if len(self.seen) > self.config.max_tracked:
            oldest = next(iter(self.seen))
            self.evicted_until_ms = max(self.evicted_until_ms, self.seen.pop(oldest))

    def _segment(self, wf: WorkflowState, segment: str) -> SegmentState:
        key = (wf.definition.workflow, segment)
        seg = self.segments.get(key)
        if seg is None:
            seg = self.segments[key] = SegmentState.create(key[0], segment)
        if len(seg.routes) != len(wf.specs):
            c = self.config
            for route in wf.definition.routes:
                if route.name not in seg.routes:
                    seg.routes[route.name] = SegmentRoute.prior(route, c.half_life_s * 1000.0, c.quality_half_life_s * 1000.0,
                                                                c.prior_weight, wf.definition.ts_ms)
        return seg

    def _eligible(self, wf: WorkflowState, seg: SegmentState, privacy: str, task: str) -> tuple[str, ...]:
        key = (privacy, task)
        names = seg.eligible_cache.get(key)
        if names is None:
            level = PrivacyLevel(privacy)
            names = seg.eligible_cache[key] = tuple(r.name for r in wf.definition.routes if exclusion(r, level, task) is None)
        return names

    def _refresh(self, wf: WorkflowState, seg: SegmentState, now_ms: int) -> None:
        c, objective, scale = self.config, wf.definition.objective, wf.cost_scale
        level = PrivacyLevel(seg.privacy) if seg.privacy is not None else None
        excluded: dict[str, str] = {}
        estimates = {}
        for route in wf.definition.routes:
            why = exclusion(route, level, seg.task)
            if why is None and self.circuits.is_open(route.name, now_ms):
                why = f"circuit open until {self.circuits.until(route.name)}"
            if why is not None:
                excluded[route.name] = why
                continue
            sr, load = seg.routes[route.name], wf.loads[route.name]
            for stat in (sr.quality, sr.cost, load.latency, load.error):
                stat.decay_to(now_ms)
            estimates[route.name] = estimate_reward(sr.quality, load.latency, sr.cost, load.error, objective, scale)
        names = list(estimates)
        self._update_prices(wf, now_ms)
        # Scarce capacity carries a shadow price: it goes to the segments that lose most without it.
        means = [e.mean - wf.prices.get(n, 0.0) for n, e in estimates.items()]
        stds = [e.std for e in estimates.values()]
        if c.exploration is Exploration.THOMPSON:
            if len(names) > self._normals.shape[1]:
                self._normals = np.hstack([self._normals, self._np_rng.standard_normal((c.draws, len(names)))])
            raw = thompson_shares(means, stds, self._normals)
        else:
            raw = ucb_shares(means, stds, c.ucb_c)
        is_new = [e.n_eff < c.confident_n for e in estimates.values()]
        # Exploration is paid from the budget: floors shrink as pacing tightens.
        shares = safe_shares(raw, is_new, c.min_share / scale, c.max_new_share)
        hard_note = None
        if wf.hard is not None and names:
            # The published policy (what route workers and clients sample) honours the hard budget too:
            # with less than 10 s of the hour's budget left, everything goes to the cheapest route.
            allowance = wf.hard.allowance(now_ms)
            if allowance < wf.hard.budget_usd_per_hour * 10.0 / 3600.0:
                cheapest = min(names, key=lambda n: self._cost_estimate(wf, seg, n))
                shares = [1.0 if n == cheapest else 0.0 for n in names]
                hard_note = (f"hard budget: ${max(allowance, 0.0):.2f} left of this hour's pro-rata "
                             f"${wf.hard.budget_usd_per_hour:g}/h; degraded to the cheapest route {cheapest}")
        seg.shares = dict(zip(names, shares))
        seg.shares.update(dict.fromkeys(excluded, 0.0))
        seg.estimates, seg.excluded = estimates, excluded
        seg.ranking = tuple(n for _, n in sorted(zip(means, names), key=lambda mn: -mn[0]))
        seg.reasons = explain(str(c.exploration), estimates, is_new, c.max_new_share, scale, wf.prices)
        notes = [f"quality shift of {r} {note[1]:+.3f} from feedback (CUSUM, {note[2]} outcomes"
                 + (f", segment {note[3]})" if note[3] else ")")
                 for r, note in wf.shift_notes.items() if r in estimates and now_ms - int(note[0]) < c.shift_note_s * 1000
                 and (not note[3] or note[3] == seg.segment)]
        if hard_note is not None:
            notes.append(hard_note)
        if notes:
            seg.reasons = seg.reasons + tuple(notes)
        self.version += 1
        seg.version, seg.computed_ms, seg.is_dirty = self.version, now_ms, False
        seg.eligible_cache.clear()

    def _update_prices(self, wf: WorkflowState, now_ms: int) -> None:
        # Dual ascent on each route's capacity constraint, once a second of event time.
        elapsed_ms = now_ms - wf.priced_ms
        if abs(elapsed_ms) < 1_000:
            return
        # Callers on a clock behind the last one (a watermark vs request time) restart it, never rewind.
        wf.priced_ms = now_ms
        rates = {name: self.load.rate(load_key(wf.definition.workflow, name), now_ms) for name in wf.specs}
        step_capacity_prices(wf.prices, rates, wf.specs, self._capacity_target(wf), self.config.price_step,
                             min(max(elapsed_ms, 0), 10_000) / 1000.0)

    def _capacity_target(self, wf: WorkflowState) -> float:
        """Planned utilisation before capacity is priced: under budget pressure, cheap capacity is used harder.

        Without pacing it is ``capacity_target`` (latency rises with load); as the cost
        multiplier grows it moves towards ``headroom``, the hard cap, so the budget and
        the capacity prices do not fight each other (both would wind up).
        """
        c = self.config
        return c.capacity_target + (c.headroom - c.capacity_target) * (1.0 - 1.0 / wf.cost_scale)

    def _dirty_route(self, route: str) -> None:
        for seg in self.segments.values():
            if route in seg.routes:
                seg.is_dirty = True
