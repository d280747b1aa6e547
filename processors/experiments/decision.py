"""The rules that end an experiment or retire a variant, as pure functions over the arms' evidence.

Winner: the leader (highest posterior mean among active arms) is declared
when, at once,

1. against every other active arm, the anytime-valid mSPRT rejects equality
   at ``alpha / (k (k - 1) / 2)`` (Bonferroni over every pair an experiment of
   ``k`` arms could ever compare, so the family of claims stays at ``alpha``)
   with the difference in the leader's favour,
2. its chance to win is at least ``p_best_threshold``,
3. every compared arm has ``min_samples_per_arm`` values,
4. the SRM check passes (a sample-ratio mismatch means the assignment is
   broken and no effect estimate can be trusted).

With three or more arms, an arm the leader beats by rule 1 (and 3, 4) is
retired early, as long as two active arms remain. A guardrail breach retires
the variant whatever the SRM says: safety first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from processors.experiments.allocation import Posterior
from processors.experiments.guardrails import Guardrail
from processors.experiments.sequential import Moments, compare


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the decision rules (see the module docstring)."""

    alpha: float = 0.05
    p_best_threshold: float = 0.95
    min_samples_per_arm: int = 500
    effect_size_sd: float = 0.1
    guardrail_alpha: float = 0.05


@dataclass(slots=True)
class PrimaryVerdict:
    """What the primary metric says now: a leader, maybe a winner, arms it beat, and the evidence."""

    leader: int
    is_winner: bool
    beaten: list[int] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)


def pair_key(a: str, b: str) -> str:
    """Order-free name of a pair of variants."""
    return "|".join(sorted((a, b)))


def judge_primary(names: Sequence[str], arms: Sequence[Moments], posts: Sequence[Posterior],
                  p_best: Sequence[float], active: Sequence[int], is_srm_ok: bool, rules: Rules,
                  running_p: dict[str, float]) -> PrimaryVerdict:
    """Apply the winner rule to the active arms; update ``running_p`` (running minimum always-valid p per pair).

    Args:
        names: Variant names, by arm index.
        arms: Primary-metric moments, by arm index.
        posts: Posteriors of the arms' means.
        p_best: Chances to be best.
        active: Indexes of the arms still receiving traffic (at least one).
        is_srm_ok: Whether the SRM check passed.
        rules: Thresholds.
        running_p: Mutated: per pair, the smallest always-valid p-value seen with enough samples.
    """
    k = len(names)
    alpha_pair = rules.alpha / max(1, k * (k - 1) // 2)
    leader = max(active, key=lambda i: (posts[i].mean, -i))
    verdict = PrimaryVerdict(leader=leader, is_winner=False)
    lead = arms[leader]
    for j in active:
        if j == leader:
            continue
        test = compare(arms[j], lead, rules.effect_size_sd, alpha_pair)
        has_enough = min(arms[j].n, lead.n) >= rules.min_samples_per_arm
        row: dict[str, Any] = {"leader": names[leader], "other": names[j], "n": [lead.n, arms[j].n],
                               "has_min_samples": has_enough}
        if test is not None:
            row.update(test.to_dict())
            if has_enough:
                key = pair_key(names[leader], names[j])
                running_p[key] = min(running_p.get(key, 1.0), test.p_value)
                row["running_min_p"] = running_p[key]
            if has_enough and test.p_value <= alpha_pair and test.delta > 0:
                verdict.beaten.append(j)
        verdict.comparisons.append(row)
    everyone_beaten = len(verdict.beaten) == len(active) - 1
    verdict.is_winner = (len(active) > 1 and everyone_beaten and is_srm_ok
                         and p_best[leader] >= rules.p_best_threshold)
    return verdict


def judge_guardrails(names: Sequence[str], guardrails: Sequence[Guardrail], moments: Sequence[Sequence[Moments]],
                     control: int, active: Sequence[int], rules: Rules) -> tuple[list[int], list[dict[str, Any]]]:
    """Arms that breach a guardrail against the control, and the evidence of every check.

    Args:
        names: Variant names, by arm index.
        guardrails: The declared guardrails.
        moments: Per guardrail, per arm, the metric's moments.
        control: Index of the control arm (never retired by a guardrail: it is the reference).
        active: Indexes of the arms still receiving traffic.
        rules: Thresholds (``guardrail_alpha`` is split over the compared arms).
    """
    challengers = [i for i in active if i != control]
    alpha = rules.guardrail_alpha / max(1, len(names) - 1)
    breached: list[int] = []
    rows: list[dict[str, Any]] = []
    for g, per_arm in zip(guardrails, moments):
        ref = per_arm[control]
        for i in challengers:
            test = compare(ref, per_arm[i], rules.effect_size_sd, alpha)
            if test is None:
                continue
            limit = g.limit(ref.mean)
            has_enough = min(ref.n, per_arm[i].n) >= rules.min_samples_per_arm
            is_breach = has_enough and test.cs_low > limit
            rows.append({"variant": names[i], "guardrail": g.key(), "control_mean": round(ref.mean, 6),
                         "variant_mean": round(per_arm[i].mean, 6), "limit": round(limit, 6),
                         "cs_low": round(test.cs_low, 6), "cs_high": round(test.cs_high, 6),
                         "is_breach": is_breach})
            if is_breach and i not in breached:
                breached.append(i)
    return breached, rows
