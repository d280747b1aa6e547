"""The explicit, JSON-able state of an experiment engine: what a snapshot holds and a restore resumes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.experiments.sequential import Moments
from schemas.records import ArmStatus, ExperimentStatus

#: Time of the split in force before any was committed: earlier than any event.
ORIGIN_TS_MS = -(2**53)


@dataclass(slots=True)
class Published:
    """What the last published decision said, to tell a material change from noise."""

    ts_ms: int
    status: ExperimentStatus
    arm_status: list[ArmStatus]
    allocation: list[float]
    p_best: list[float]
    n_total: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"ts_ms": self.ts_ms, "status": self.status.value, "arm_status": [s.value for s in self.arm_status],
                "allocation": self.allocation, "p_best": self.p_best, "n_total": self.n_total}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Published:
        """Rebuild from ``to_dict``'s output."""
        return cls(int(data["ts_ms"]), ExperimentStatus(data["status"]), [ArmStatus(s) for s in data["arm_status"]],
                   [float(x) for x in data["allocation"]], [float(x) for x in data["p_best"]], int(data["n_total"]))


@dataclass(slots=True)
class EngineState:
    """Per arm: primary and guardrail moments, observed and expected counts, status; plus the split history.

    >>> s = EngineState.initial(2, 1)
    >>> s.in_force, s.history[0][1], EngineState.from_dict(s.to_dict()) == s
    ([0.5, 0.5], [0.5, 0.5], True)
    """

    primary: list[Moments]
    guards: list[list[Moments]]
    observed: list[int]
    expected: list[float]
    arm_status: list[ArmStatus]
    in_force: list[float]
    history: list[tuple[int, list[float]]]
    status: ExperimentStatus = ExperimentStatus.RUNNING
    winner: str | None = None
    decided_ts_ms: int | None = None
    first_ts_ms: int | None = None
    last_refresh_ms: int | None = None
    fresh: int = 0
    ignored: int = 0
    running_p: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    published: Published | None = None

    @classmethod
    def initial(cls, arms: int, guardrails: int) -> EngineState:
        """The state before any outcome: an even split in force since the origin."""
        even = [1.0 / arms] * arms
        return cls(primary=[Moments() for _ in range(arms)],
                   guards=[[Moments() for _ in range(arms)] for _ in range(guardrails)],
                   observed=[0] * arms, expected=[0.0] * arms, arm_status=[ArmStatus.ACTIVE] * arms,
                   in_force=list(even), history=[(ORIGIN_TS_MS, list(even))])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (floats kept exact: ``json`` round-trips them bit for bit)."""
        return {
            "primary": [m.to_dict() for m in self.primary],
            "guards": [[m.to_dict() for m in per_arm] for per_arm in self.guards],
            "observed": list(self.observed), "expected": list(self.expected),
            "arm_status": [s.value for s in self.arm_status], "in_force": list(self.in_force),
            "history": [[ts, list(shares)] for ts, shares in self.history],
            "status": self.status.value, "winner": self.winner, "decided_ts_ms": self.decided_ts_ms,
            "first_ts_ms": self.first_ts_ms, "last_refresh_ms": self.last_refresh_ms, "fresh": self.fresh,
            "ignored": self.ignored, "running_p": dict(self.running_p), "reasons": dict(self.reasons),
            "published": self.published.to_dict() if self.published else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineState:
        """Rebuild from ``to_dict``'s output."""
        published = data.get("published")
        return cls(
            primary=[Moments.from_dict(m) for m in data["primary"]],
            guards=[[Moments.from_dict(m) for m in per_arm] for per_arm in data["guards"]],
            observed=[int(x) for x in data["observed"]], expected=[float(x) for x in data["expected"]],
            arm_status=[ArmStatus(s) for s in data["arm_status"]], in_force=[float(x) for x in data["in_force"]],
            history=[(int(ts), [float(x) for x in shares]) for ts, shares in data["history"]],
            status=ExperimentStatus(data["status"]), winner=data["winner"], decided_ts_ms=data["decided_ts_ms"],
            first_ts_ms=data["first_ts_ms"], last_refresh_ms=data["last_refresh_ms"], fresh=int(data["fresh"]),
            ignored=int(data["ignored"]), running_p={k: float(v) for k, v in data["running_p"].items()},
            reasons=dict(data["reasons"]), published=Published.from_dict(published) if published else None,
        )
