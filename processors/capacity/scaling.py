"""Predictive scaling: desired replicas per target ahead of forecast demand, without flapping, within a cost cap.

``ScalingPlanner.plan(target, ts_ms, demand_upper_rps)`` takes, for one target,
the upper bound of the forecast demand over the next ``lead`` (the provisioning
time) and decides the replicas to have by then:

- up at once when the forecast needs more than the current replicas (at
  ``target_utilisation``);
- down only when even ``down_utilisation`` (lower) leaves a replica idle, after
  ``cooldown_ms`` since the last change (hysteresis: the two thresholds make a band);
- never a change of direction within ``direction_ms`` (30 minutes) of the last one;
- extra replicas above ``min_replicas`` cost ``cost_per_replica_hour_usd`` each:
  at most ``max_extra_usd_per_hour`` of them.

A decision is a ``ScalingDecision``; ``as_command`` turns it into a signed,
idempotent (the id is a hash of its content), expiring ``Command``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.records import Command
from schemas.signing import sign


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """How desired replicas are derived from forecast demand."""

    replica_rps: float = 10.0
    target_utilisation: float = 0.85
    down_utilisation: float = 0.7
    min_replicas: int = 1
    max_replicas: int = 100
    cooldown_ms: int = 600_000
    direction_ms: int = 1_800_000
    cost_per_replica_hour_usd: float = 1.0
    max_extra_usd_per_hour: float = float("inf")
    lead_ms: int = 300_000
    ttl_ms: int = 900_000


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """A change of desired replicas for one target, and why."""

    target: str
    ts_ms: int
    replicas: int
    previous: int
    demand_rps: float
    is_capped: bool
    replica_rps: float

    @property
    def direction(self) -> int:
        return 1 if self.replicas > self.previous else -1


@dataclass
class TargetState:
    """What the planner remembers of one target (plain data: it goes to the changelog as JSON)."""

    replicas: int
    changed_ms: int = -(2**62)
    direction: int = 0
    direction_changed_ms: int = -(2**62)


class ScalingPlanner:
    """Desired replicas per target from forecasts; one ``TargetState`` each.

    >>> p = ScalingPlanner(ScalingConfig(replica_rps=10, min_replicas=1))
    >>> p.plan("gpu-pool", 0, 45.0).replicas  # 45 rps at 85 % of 10 rps per replica
    6
    >>> p.plan("gpu-pool", 60_000, 20.0) is None  # down is held by the cooldown
    True
    >>> p.plan("gpu-pool", 700_000, 20.0) is None  # and a direction change by the 30-minute rule
    True
    >>> p.plan("gpu-pool", 1_900_000, 20.0).replicas  # down at 70 %: the band between 70 and 85 % holds
    3
    """

    def __init__(self, config: ScalingConfig = ScalingConfig()) -> None:
        self.config = config
        self.targets: dict[str, TargetState] = {}

    def desired(self, demand_rps: float, utilisation: float, replica_rps: float | None = None) -> int:
        """Replicas that serve ``demand_rps`` at ``utilisation``, within [min, max]."""
        cfg = self.config
        per_replica = replica_rps if replica_rps is not None and replica_rps > 0 else cfg.replica_rps
        need = math.ceil(max(demand_rps, 0.0) / (per_replica * utilisation) - 1e-9)
        return min(max(need, cfg.min_replicas), cfg.max_replicas)

    def cap(self) -> int:
        """Most replicas the cost cap allows."""
        cfg = self.config
        if math.isinf(cfg.max_extra_usd_per_hour) or cfg.cost_per_replica_hour_usd <= 0:
            return cfg.max_replicas
        extra = int(cfg.max_extra_usd_per_hour // cfg.cost_per_replica_hour_usd)
        return min(cfg.min_replicas + extra, cfg.max_replicas)

    def plan(self, target: str, ts_ms: int, demand_rps: float, replica_rps: float | None = None) -> ScalingDecision | None:
        """A new desired replica count for ``target`` given the demand to be ready for, or ``None``.

        ``replica_rps`` is the target's capacity per replica (default: the config's).
        """
        cfg = self.config
        state = self.targets.get(target)
        if state is None:
            state = self.targets[target] = TargetState(cfg.min_replicas)
        up = self.desired(demand_rps, cfg.target_utilisation, replica_rps)
        down = self.desired(demand_rps, cfg.down_utilisation, replica_rps)
        capped = min(up, self.cap())
        if capped > state.replicas:
            wanted, direction = capped, 1
        elif down < state.replicas and ts_ms - state.changed_ms >= cfg.cooldown_ms:
            wanted, direction = down, -1
        else:
            return None
        if direction != state.direction and state.direction != 0 and ts_ms - state.direction_changed_ms < cfg.direction_ms:
            return None
        per_replica = replica_rps if replica_rps is not None and replica_rps > 0 else cfg.replica_rps
        decision = ScalingDecision(target, ts_ms, wanted, state.replicas, demand_rps, capped < up, per_replica)
        if direction != state.direction:
            state.direction, state.direction_changed_ms = direction, ts_ms
        state.replicas, state.changed_ms = wanted, ts_ms
        return decision

    def snapshot(self, target: str) -> dict[str, Any] | None:
        state = self.targets.get(target)
        return None if state is None else {"r": state.replicas, "c": state.changed_ms, "d": state.direction,
                                           "dc": state.direction_changed_ms}

    def load(self, target: str, data: dict[str, Any]) -> None:
        self.targets[target] = TargetState(int(data["r"]), int(data["c"]), int(data["d"]), int(data["dc"]))


def command_id(*parts: object) -> str:
    """A deterministic idempotency key: the same content always gets the same id (a replay is a duplicate)."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def as_command(decision: ScalingDecision, config: ScalingConfig, key: bytes, issuer: str,
               is_dry_run: bool = False) -> Command:
    """The signed ``scale_to`` command of a decision; it expires ``ttl_ms`` after its event time."""
    evidence = orjson.dumps({"demand_upper_rps": round(decision.demand_rps, 3), "replica_rps": decision.replica_rps,
                             "target_utilisation": config.target_utilisation, "lead_s": config.lead_ms / 1000,
                             "previous": decision.previous, "capped_by_cost": decision.is_capped}).decode()
    verb = "up" if decision.direction > 0 else "down"
    reason = (f"forecast demand {decision.demand_rps:.1f} rps within {config.lead_ms // 1000} s needs "
              f"{decision.replicas} replicas (scale {verb} from {decision.previous})")
    command = Command(
        command_id=command_id("scale", decision.target, decision.ts_ms, decision.replicas),
        ts_ms=decision.ts_ms, target=decision.target, action="scale_to", reason=reason, evidence=evidence,
        expires_ts_ms=decision.ts_ms + config.ttl_ms, issuer=issuer, signature="",
        params={"replicas": str(decision.replicas), "previous": str(decision.previous),
                "replica_rps": f"{decision.replica_rps:g}"},
        is_dry_run=is_dry_run)
    return sign(command, key)
