"""The simulated platform: advances event time slice by slice, asks a policy, obeys its actions.

``Environment.step(until_ms)`` is the transport seam: it returns the records
produced up to ``until_ms`` (empty on the cheap path) and ``apply(action)``
takes back whatever the policy (in process) or loopwise (over Kafka) decided.
The offline driver (``offline.py``) and the live driver only move records.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from infra.simulator.control import ControlState
from infra.simulator.errors import SimulatorError
from infra.simulator.incidents import IncidentBook
from infra.simulator.outcomes import score_slice
from infra.simulator.protocols import Action, BatchPolicy, Detection, Policy, SliceView
from infra.simulator.scenario import Scenario
from infra.simulator.scorecard import Accumulator, RunResult, build_scorecard
from infra.simulator.telemetry import Telemetry
from infra.simulator.traffic import TrafficGenerator, TrafficSlice
from infra.simulator.truth import Truth, TruthState
from processors.rollout import bucket
from schemas.records import Command, ExperimentDecision, RolloutStep, RoutingPolicy


class Environment:
    """One run of a scenario under one policy.

    Args:
        scenario: The validated scenario.
        policy: A ``BatchPolicy`` (cheap path) or a ``Policy`` (record path).
        seed: Seeds all traffic and noise; the same seed gives the same requests to every policy.
        duration_s: Run length (default: the scenario's).
        rate: Base arrival rate in requests/s (default: the scenario's); capacities scale with it.
        emit_records: Produce real records even for a batch policy (live mode, tests).
    """

    def __init__(self, scenario: Scenario, policy: BatchPolicy | Policy, seed: int = 1,
                 duration_s: float | None = None, rate: float | None = None, emit_records: bool = False) -> None:
        self.scenario, self.policy, self.seed = scenario, policy, seed
        self.duration_s = float(duration_s if duration_s is not None else scenario.duration_s)
        self.rate = float(rate if rate is not None else scenario.rate)
        if self.duration_s <= 0 or self.rate <= 0:
            raise SimulatorError("duration and rate must be positive")
        self.truth = Truth(scenario, self.rate)
        self.traffic = TrafficGenerator(self.truth, seed, self.rate)
        self.control = ControlState(self.truth)
        self.book = IncidentBook.from_scenario(scenario, self.duration_s)
        self.acc = Accumulator(scenario.start_ms, len(scenario.workflows))
        self.is_batch = isinstance(policy, BatchPolicy)
        if not self.is_batch and not isinstance(policy, Policy):
            raise SimulatorError(f"{policy!r} is neither a Policy nor a BatchPolicy")
        self.telemetry = Telemetry(self.truth, seed) if emit_records or not self.is_batch else None
        self.end_ms = scenario.start_ms + int(self.duration_s * 1000)
        self.now_ms = scenario.start_ms
        self._slice = 0
        self._rate_ewma = np.zeros(len(self.truth.routes))
        self._decay = float(np.exp(-scenario.slice_ms / 1000.0 / scenario.load_window_s))

    @property
    def is_done(self) -> bool:
        """Whether the run has reached its end."""
        return self.now_ms >= self.end_ms

    def step(self, until_ms: int) -> list[Any]:
        """Advance to ``until_ms`` (at most the run's end); return the records produced, in time order."""
        records: list[Any] = []
        if self.telemetry is not None and self._slice == 0:
            records.extend(self.telemetry.workflows(self.now_ms, self.truth.state_at(0.0), self.control))
        while self.now_ms < min(until_ms, self.end_ms):
            records.extend(self._run_slice())
        return records

    def apply(self, action: Action) -> None:
        """Obey an action from the policy or from loopwise."""
        if isinstance(action, Command):
            if self.control.apply_command(action, self.now_ms):
                self.book.record_command(action.target, action.action, self.now_ms)
        elif isinstance(action, RoutingPolicy):
            self.control.apply_routing(action)
        elif isinstance(action, ExperimentDecision):
            self.control.apply_experiment(action)
        elif isinstance(action, RolloutStep):
            self.control.apply_rollout(action)
        elif isinstance(action, Detection):
            self.notify_detected(action.entity, action.ts_ms)
        else:
            raise SimulatorError(f"cannot apply {type(action).__name__}")

    def apply_command(self, command: Command) -> None:
        """Obey a remediation/scaling/rollback command (see ``ControlState.apply_command``)."""
        self.apply(command)

    def notify_detected(self, entity: str, ts_ms: int) -> None:
        """Record that loopwise flagged ``entity`` (scored as detection of its incident)."""
        self.book.notify_detected(entity, ts_ms)

    def _capacity(self, state: TruthState) -> np.ndarray:
        return self.truth.capacity * state.cap_mult * self.control.capacity_scale(self.now_ms)

    def _allowed(self, traffic: TrafficSlice, state: TruthState) -> np.ndarray:
        t = self.truth
        usable = ~self.control.is_open(self.now_ms)
        if state.available is not None:
            usable = usable & state.available
        return ((t.route_wf[None, :] == traffic.workflow[:, None])
                & (t.max_privacy[None, :] >= traffic.privacy[:, None])
                & t.capable[:, traffic.task].T & usable[None, :])

    def _shed_mask(self, traffic: TrafficSlice) -> np.ndarray:
        shed = np.zeros(traffic.n, dtype=bool)
        for w, rule in self.control.shedding.items():
            if rule.until_ms > self.now_ms:
                shed |= (traffic.workflow == w) & (traffic.priority <= rule.max_priority) & (traffic.u_shed < rule.fraction)
        return shed

    def _run_slice(self) -> list[Any]:
        sc, t = self.scenario, self.truth
        slice_s = sc.slice_ms / 1000.0
        state = t.state_at(self._slice * slice_s + slice_s / 2)
        for w in self.control.rolled_back:
            state.canary_share[w] = 0.0
        traffic = self.traffic.draw(self._slice)
        capacity = self._capacity(state)
        allowed = self._allowed(traffic, state)
        utilisation_prior = self._rate_ewma * self._decay / capacity
        if self.is_batch:
            view = SliceView(self.now_ms, traffic, allowed, t, state, utilisation_prior, self._rate_ewma, capacity,
                             self._decay, slice_s, self.duration_s)
            route, variant = self.policy.choose_batch(view)  # type: ignore[union-attr]
        else:
            assert self.telemetry is not None
            route, variant = self.telemetry.ask(self.policy, traffic, self.control, state)  # type: ignore[arg-type]
        route = self._enforce(route, allowed, traffic, state)
        variant = self._variants(traffic) if variant is None else np.where(variant < 0, self._variants(traffic), variant)
        version = self._versions(traffic, state)
        shed = self._shed_mask(traffic)
        counts = np.bincount(route[(route >= 0) & ~shed], minlength=len(t.routes)) / slice_s
        self._rate_ewma = counts if self._slice == 0 else self._decay * self._rate_ewma + (1 - self._decay) * counts
        utilisation = self._rate_ewma / capacity
        out = score_slice(t, state, traffic, route, variant, version, shed, utilisation)
        self.acc.add(out)
        self.now_ms = min(self.end_ms, sc.start_ms + (self._slice + 1) * sc.slice_ms)
        self._slice += 1
        records = (self.telemetry.emit(out, state, self.control, self.now_ms, is_last=self.is_done)
                   if self.telemetry is not None else [])
        if self.is_batch:
            for action in self.policy.observe_batch(out):  # type: ignore[union-attr]
                self.apply(action)
        return records

    def _versions(self, traffic: TrafficSlice, state: TruthState) -> np.ndarray:
        """1 where a request runs under the canary: by the plan's schedule (baselines), or by loopwise's
        split with the product's own sticky hash of the request id (``processors.rollout.bucket``)."""
        share = state.canary_share.copy()
        u = traffic.u_version
        if self.control.split_share:
            for w, s in self.control.split_share.items():
                share[w] = 0.0 if w in self.control.rolled_back else s
            if self.telemetry is not None:
                names = [wf.name for wf in self.scenario.workflows]
                u = np.array([bucket(names[w], self.telemetry.request_id(traffic.first_request + i))
                              for i, w in enumerate(traffic.workflow.tolist())])
        return (u < share[traffic.workflow]).astype(np.int64)

    def _enforce(self, route: np.ndarray, allowed: np.ndarray, traffic: TrafficSlice, state: TruthState) -> np.ndarray:
        # The gateway never sends to an open circuit or another workflow's route: it falls back
        # to the workflow's fallback route, else its first allowed route, else rejects (dropped).
        route = np.asarray(route, dtype=np.int64)
        t = self.truth
        valid = (route >= 0) & (t.route_wf[np.maximum(route, 0)] == traffic.workflow)
        valid &= ~self.control.is_open(self.now_ms)[np.maximum(route, 0)]
        if state.available is not None:
            valid &= state.available[np.maximum(route, 0)]
        if valid.all():
            return route
        preferred = allowed.copy()
        for w, wf in enumerate(self.scenario.workflows):
            fallback = [r for r in t.wf_routes[w] if t.route_names[r] == wf.fallback_route]
            rows = traffic.workflow == w
            if fallback and rows.any():
                mask = allowed[rows][:, fallback[0]]
                preferred[np.flatnonzero(rows)[mask]] = False
                preferred[np.flatnonzero(rows)[mask], fallback[0]] = True
        first = np.where(preferred.any(axis=1), np.argmax(preferred, axis=1), -1)
        return np.where(valid, route, first)

    def _variants(self, traffic: TrafficSlice) -> np.ndarray:
        variant = np.zeros(traffic.n, dtype=np.int64)
        for w, effects in enumerate(self.truth.variant_effects):
            rows = traffic.workflow == w
            cum = self.control.allocations.get(w)
            if cum is None:
                cum = np.arange(1, len(effects) + 1) / len(effects)
            variant[rows] = np.minimum(np.searchsorted(cum, traffic.u_variant[rows], side="right"), len(effects) - 1)
        return variant

    def experiments(self) -> list[dict[str, Any]]:
        """Each experiment's true winner and what the policy declared (and when)."""
        rows = []
        for wf, effects in zip(self.scenario.workflows, self.truth.variant_effects):
            if wf.experiment is None or len(wf.variants) < 2:
                continue
            best = int(np.argmax(effects))
            true_winner = wf.variants[best].name if effects.max() - effects.min() > 1e-12 else "none"
            decision = self.control.experiment_decisions.get(wf.experiment)
            rows.append({"experiment": wf.experiment, "true_winner": true_winner,
                         "declared_winner": decision.winner if decision else None,
                         "decided_at": decision.decided_ts_ms if decision else None})
        return rows

    def result(self) -> RunResult:
        """The run's scorecard so far (call after the run; oracle fields are filled by ``compare``)."""
        self.book.close(self.now_ms)
        # Budgets scale with --rate like capacities, so an overridden rate keeps the squeeze.
        scale = self.rate / self.scenario.rate
        budgets = [None if wf.budget_usd_per_hour is None else wf.budget_usd_per_hour * scale for wf in self.scenario.workflows]
        impl = getattr(self.policy, "impl", self.policy.name)
        card = build_scorecard(self.acc, self.book, budgets, self.duration_s, self.experiments(), impl)
        return RunResult(self.policy.name, impl, card, self.acc.series(), self.acc.shed, self.control.ignored,
                         self.scenario.start_ms, self.end_ms)


def drive(env: Environment, sink: Any = None, on_progress: Any = None) -> RunResult:
    """Run ``env`` to its end in process: records go to ``sink`` and to the policy, its actions back."""
    observe = None if env.is_batch else env.policy.observe  # type: ignore[union-attr]
    while not env.is_done:
        records: Sequence[Any] = env.step(env.now_ms + env.scenario.slice_ms)
        if sink is not None and records:
            sink(records)
        if observe is not None and records:
            for action in observe(records):
                env.apply(action)
        if on_progress is not None:
            on_progress(env.now_ms - env.scenario.start_ms, env.end_ms - env.scenario.start_ms)
    return env.result()

