"""One prompt-variant experiment: learns from final outcomes, splits traffic, and decides, in event time.

Only *final* outcomes are learned from (``Outcome.is_final``): the correlator
emits a provisional outcome per request at once and the final one when the
feedback window closes, so counting both would count a request twice.

**Allocation in force.** ``allocation(now_ms)`` recomputes the split at most
every ``refresh_ms`` of event time and only commits a new split when a share
moved by ``allocation_step`` or more (or an arm's status changed): the split
in force changes in steps, ``decide`` publishes every step, and the SRM check
compares each arm's outcomes with the split that was in force when its
request was made.

**Stickiness.** ``assign(unit_id, now_ms)`` maps a keyed blake2b hash of
``(experiment, unit)`` to a position in ``[0, 1)`` and returns the variant
whose slice of the cumulative split (in declared order) holds it. While the
split in force is unchanged, a unit always gets the same variant, in every
process. When the split moves, positions stay and slice edges move: only the
units between an old and a new edge switch (with two arms, a shift of ``x``
of the traffic moves exactly ``x`` of the units, the least possible); units
of a retired variant are spread over the others. Pass a user or session id
(see ``unit_of``) for stickiness, the request id for none.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from processors.experiments.allocation import (
    Chances, bucket, chance_to_win, pick, posteriors, top_two_shares, with_floor,
)
from processors.experiments.decision import Rules, judge_guardrails, judge_primary
from processors.experiments.guardrails import Guardrail, metric_value
from processors.experiments.sequential import Moments, srm_p_value
from processors.experiments.state import EngineState, Published
from schemas.records import (
    ArmStats, ArmStatus, ExperimentDecision, ExperimentSpec, ExperimentStatus, Outcome, RequestContext, VariantSpec,
    WorkflowDefinition,
)


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """Tuning of an experiment engine; defaults suit rewards of the platform's scale (about 0–1)."""

    rules: Rules = Rules()
    srm_alpha: float = 0.001
    top_two_beta: float | None = 0.5
    prior_sd: float = 1.0
    refresh_ms: int = 60_000
    allocation_step: float = 0.02
    p_best_step: float = 0.05
    heartbeat_ms: int = 3_600_000
    mc_draws: int = 4000
    seed: int = 0
    history_limit: int = 1000

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Rebuild from ``to_dict``'s output."""
        return cls(**{**data, "rules": Rules(**data["rules"])})


def unit_of(context: RequestContext, request_id: str, sticky_by: str | None) -> str:
    """The unit a request is bucketed by: its user, session or a context attribute; else the request itself.

    >>> ctx = RequestContext(tenant="t", task="x", user_id="u7", session_id="s1")
    >>> unit_of(ctx, "r1", "user"), unit_of(ctx, "r1", "session"), unit_of(ctx, "r1", None)
    ('u7', 's1', 'r1')
    """
    if sticky_by is None:
        return request_id
    field_name = {"user": "user_id", "session": "session_id"}.get(sticky_by, sticky_by)
    value = getattr(context, field_name, None) if field_name in ("user_id", "session_id", "tenant") else None
    value = value or context.attributes.get(sticky_by)
    return str(value) if value else request_id


class ExperimentEngine:
    """Thompson-allocated, anytime-valid A/B/n test of one workflow's prompt variants.

    >>> eng = ExperimentEngine(ExperimentSpec("tone"), "bot", [VariantSpec("a", is_control=True), VariantSpec("b")])
    >>> eng.allocation(0), eng.assign("user-1", 0)
    ({'a': 0.5, 'b': 0.5}, 'a')
    >>> d = eng.decide(0)
    >>> d.status, [a.status.value for a in d.arms], d.winner
    (<ExperimentStatus.RUNNING: 'running'>, ['active', 'active'], None)
    """

    def __init__(self, spec: ExperimentSpec, workflow: str, variants: Sequence[VariantSpec],
                 config: ExperimentConfig = ExperimentConfig()) -> None:
        if len(variants) < 2:
            raise ValueError(f"experiment {spec.name!r} needs at least two variants")
        self.spec, self.workflow, self.config = spec, workflow, config
        self.variants = tuple(variants)
        self.names = tuple(v.name for v in variants)
        self._index = {name: i for i, name in enumerate(self.names)}
        self.control = next((i for i, v in enumerate(variants) if v.is_control), 0)
        self.guardrails = tuple(Guardrail.parse(g) for g in spec.guardrails)
        self.state = EngineState.initial(len(self.names), len(self.guardrails))
        self._hist_ts = [entry[0] for entry in self.state.history]
        self._cache: tuple[int, Chances] | None = None

    @classmethod
    def for_workflow(cls, definition: WorkflowDefinition, config: ExperimentConfig = ExperimentConfig()
                     ) -> ExperimentEngine | None:
        """The engine of a workflow's experiment; None when it declares none (or fewer than two variants)."""
        if definition.experiment is None or len(definition.variants) < 2:
            return None
        return cls(definition.experiment, definition.workflow, definition.variants, config)

    # ------------------------------------------------------------------ learning

    def observe(self, outcome: Outcome) -> bool:
        """Learn from one outcome; returns whether it counted (final, this workflow, a known variant)."""
        i = self._index.get(outcome.variant or "")
        if not outcome.is_final or i is None or outcome.workflow != self.workflow:
            self.state.ignored += 1
            return False
        st = self.state
        value = metric_value(outcome, self.spec.primary_metric)
        if value is not None:
            st.primary[i].add(value)
        for g, per_arm in zip(self.guardrails, st.guards):
            gv = metric_value(outcome, g.metric)
            if gv is not None:
                per_arm[i].add(gv)
        st.observed[i] += 1
        shares = st.history[max(0, bisect.bisect_right(self._hist_ts, outcome.request_ts_ms) - 1)][1]
        for j, share in enumerate(shares):
            st.expected[j] += share
        if st.first_ts_ms is None or outcome.request_ts_ms < st.first_ts_ms:
            st.first_ts_ms = outcome.request_ts_ms
        st.fresh += 1
        return True

    # ---------------------------------------------------------------- allocation

    def allocation(self, now_ms: int) -> dict[str, float]:
        """The split in force at ``now_ms`` (refreshed from the evidence when due), variant → share."""
        return dict(zip(self.names, self._shares(now_ms)))

    def assign(self, unit_id: str, now_ms: int) -> str:
        """The variant of one unit (user, session or request) under the split in force; sticky while it holds."""
        return pick(bucket(self.spec.name, unit_id), self.names, self._shares(now_ms))

    def _shares(self, now_ms: int) -> list[float]:
        st = self.state
        if st.status is ExperimentStatus.RUNNING and st.fresh and (
                st.last_refresh_ms is None or now_ms - st.last_refresh_ms >= self.config.refresh_ms):
            self._refresh(now_ms, force=False)
        return st.in_force

    def _chances(self) -> Chances:
        total = sum(m.n for m in self.state.primary)
        if self._cache is None or self._cache[0] != total:
            rng = np.random.default_rng([self.config.seed, total])  # a function of the state: restores replay it
            posts = posteriors(self.state.primary, self.config.prior_sd)
            self._cache = (total, chance_to_win(posts, rng, self.config.mc_draws))
        return self._cache[1]

    def _target(self) -> list[float]:
        st = self.state
        k = len(self.names)
        if st.status is not ExperimentStatus.RUNNING:
            keep = self._index[st.winner] if st.winner else (self.control if self._is_active(self.control)
                                                              else self._active()[0])
            return [1.0 if i == keep else 0.0 for i in range(k)]
        active = self._active()
        chances = self._chances()
        # Retired arms leave the race: chances are recomputed over the active ones only.
        sub = Chances([chances.p_best[i] for i in active], [0.0] * len(active),
                      [[chances.best_without[j][i] for i in active] for j in active])
        shares = top_two_shares(sub, self.config.top_two_beta)
        full = [0.0] * k
        for i, s in zip(active, shares):
            full[i] = s
        return with_floor(full, [self._is_active(i) for i in range(k)], self.spec.min_share)

    def _refresh(self, now_ms: int, force: bool) -> bool:
        st = self.state
        target = self._target()
        st.last_refresh_ms, st.fresh = now_ms, 0
        moved = max(abs(a - b) for a, b in zip(target, st.in_force))
        support_changed = any((a > 0) != (b > 0) for a, b in zip(target, st.in_force))
        if not (force or support_changed or moved >= self.config.allocation_step):
            return False
        st.in_force = target
        st.history.append((now_ms, target))
        if len(st.history) > self.config.history_limit:
            del st.history[0]  # outcomes of older requests are then judged against the oldest split kept
        self._hist_ts = [entry[0] for entry in st.history]
        return True

    def _active(self) -> list[int]:
        return [i for i, s in enumerate(self.state.arm_status) if s is not ArmStatus.RETIRED]

    def _is_active(self, i: int) -> bool:
        return self.state.arm_status[i] is not ArmStatus.RETIRED

    # ------------------------------------------------------------------ deciding

    def decide(self, now_ms: int) -> ExperimentDecision | None:
        """Apply guardrails and the winner rule; the decision when something changed materially, else None.

        Material: the first call, a status (experiment or arm) change, a new split in force, a chance to
        win moved by ``p_best_step``, or ``heartbeat_ms`` passed with new outcomes.
        """
        st, rules = self.state, self.config.rules
        if st.status is not ExperimentStatus.RUNNING and st.published is not None:
            return None
        srm_p = srm_p_value(st.observed, st.expected)
        is_srm_ok = srm_p >= self.config.srm_alpha
        breached, guard_rows = judge_guardrails(self.names, self.guardrails, st.guards, self.control,
                                                self._active(), rules)
        for i in breached:
            self._retire(i, "guardrail breach")
        evidence: dict[str, Any] = {"guardrails": guard_rows}
        active = self._active()
        chances = self._chances()
        p_best, loss = chances.p_best, chances.expected_loss
        posts = posteriors(st.primary, self.config.prior_sd)
        changed = bool(breached)
        if st.status is ExperimentStatus.RUNNING and len(active) == 1:
            changed |= self._stop(now_ms, "every challenger retired by a guardrail")
        elif st.status is ExperimentStatus.RUNNING:
            verdict = judge_primary(self.names, st.primary, posts, p_best, active, is_srm_ok, rules, st.running_p)
            evidence.update(leader=self.names[verdict.leader], comparisons=verdict.comparisons)
            if verdict.is_winner:
                changed |= self._declare(verdict.leader, now_ms)
            elif is_srm_ok and len(active) - len(verdict.beaten) >= 2:
                for j in verdict.beaten:
                    changed |= self._retire(j, f"beaten by {self.names[verdict.leader]}")
            limit_s = self.spec.max_duration_s
            if (st.status is ExperimentStatus.RUNNING and limit_s is not None and st.first_ts_ms is not None
                    and now_ms - st.first_ts_ms >= limit_s * 1000):
                changed |= self._stop(now_ms, "max_duration_s reached without a winner")
        if changed or st.status is not ExperimentStatus.RUNNING:
            self._refresh(now_ms, force=True)
        else:
            self._shares(now_ms)
        evidence.update(self._evidence_common(srm_p, is_srm_ok))
        return self._publish(now_ms, posts, p_best, loss, srm_p, evidence)

    def _retire(self, i: int, reason: str) -> bool:
        if self.state.arm_status[i] is ArmStatus.RETIRED:
            return False
        self.state.arm_status[i] = ArmStatus.RETIRED
        self.state.reasons[self.names[i]] = reason
        return True

    def _declare(self, leader: int, now_ms: int) -> bool:
        st = self.state
        st.status, st.winner, st.decided_ts_ms = ExperimentStatus.WINNER, self.names[leader], now_ms
        st.arm_status[leader] = ArmStatus.WINNER
        for i in self._active():
            if i != leader:
                self._retire(i, f"lost to {self.names[leader]}")
        return True

    def _stop(self, now_ms: int, reason: str) -> bool:
        self.state.status, self.state.decided_ts_ms = ExperimentStatus.STOPPED, now_ms
        self.state.reasons["(experiment)"] = reason  # parenthesised to stand apart from variant names
        return True

    def _evidence_common(self, srm_p: float, is_srm_ok: bool) -> dict[str, Any]:
        st, rules, k = self.state, self.config.rules, len(self.names)
        return {
            "method": "mSPRT, normal mixture on the difference of means (Johari et al.); always-valid p",
            "primary_metric": self.spec.primary_metric, "alpha": rules.alpha,
            "alpha_per_pair": rules.alpha / max(1, k * (k - 1) // 2), "effect_size_sd": rules.effect_size_sd,
            "p_best_threshold": rules.p_best_threshold, "min_samples_per_arm": rules.min_samples_per_arm,
            "srm": {"p_value": float(f"{srm_p:.6g}"), "alpha": self.config.srm_alpha, "is_ok": is_srm_ok,
                    "observed": list(st.observed), "expected": [round(e, 3) for e in st.expected]},
            "reasons": dict(st.reasons), "ignored": st.ignored,
        }

    def _publish(self, now_ms: int, posts: Sequence[Any], p_best: list[float], loss: list[float], srm_p: float,
                 evidence: dict[str, Any]) -> ExperimentDecision | None:
        st, cfg = self.state, self.config
        n_total = sum(st.observed)
        last = st.published
        if last is not None and not (
                last.status is not st.status or last.arm_status != st.arm_status or last.allocation != st.in_force
                or max(abs(a - b) for a, b in zip(last.p_best, p_best)) >= cfg.p_best_step
                or (now_ms - last.ts_ms >= cfg.heartbeat_ms and n_total > last.n_total)):
            return None
        st.published = Published(now_ms, st.status, list(st.arm_status), list(st.in_force), list(p_best), n_total)
        arms = []
        for i, name in enumerate(self.names):
            low, high = posts[i].interval()
            arms.append(ArmStats(variant=name, allocation=st.in_force[i], n=st.primary[i].n, mean=st.primary[i].mean,
                                 ci_low=low, ci_high=high, p_best=p_best[i], expected_loss=loss[i],
                                 status=st.arm_status[i]))
        return ExperimentDecision(experiment=self.spec.name, workflow=self.workflow, ts_ms=now_ms, status=st.status,
                                  arms=tuple(arms), srm_p_value=srm_p, evidence=json.dumps(evidence, sort_keys=True),
                                  winner=st.winner, decided_ts_ms=st.decided_ts_ms)

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume, as plain JSON-able values (no pickle)."""
        spec = asdict(self.spec)
        spec["guardrails"] = list(self.spec.guardrails)
        return {"version": 1, "workflow": self.workflow, "spec": spec,
                "variants": [asdict(v) for v in self.variants], "config": self.config.to_dict(),
                "state": self.state.to_dict()}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ExperimentEngine:
        """Rebuild an engine from ``snapshot``'s output; it then decides exactly as the original would."""
        spec = ExperimentSpec(**{**data["spec"], "guardrails": tuple(data["spec"]["guardrails"])})
        engine = cls(spec, data["workflow"], [VariantSpec(**v) for v in data["variants"]],
                     ExperimentConfig.from_dict(data["config"]))
        engine.state = EngineState.from_dict(data["state"])
        engine._hist_ts = [entry[0] for entry in engine.state.history]
        return engine
