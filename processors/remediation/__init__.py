"""Self-healing: circuit breakers, declared actions with escalation, shedding, rollback, signed idempotent commands.

The entry point is ``Remediator`` (``planner.py``); the parts are usable alone:
``CircuitBreaker`` (breaker.py), ``plan_for``/``DEFAULT_REMEDIATION`` (actions.py),
``RateLimits`` (limits.py), ``idempotency_key`` (keys.py), ``OverloadWatch`` and
``RegressionWatch`` (watch.py), ``AuditLog`` (audit.py).
"""

from processors.remediation.actions import DEFAULT_REMEDIATION, ActionPlan, plan_for
from processors.remediation.approval import ApprovalBook, ApprovalState, RiskPolicy, judge_approval
from processors.remediation.audit import AuditLog, as_insight
from processors.remediation.breaker import BreakerConfig, BreakerState, CircuitBreaker, Transition
from processors.remediation.keys import episode_id, idempotency_key
from processors.remediation.limits import RateLimits
from processors.remediation.planner import Remediator, RemediatorConfig

__all__ = [
    "DEFAULT_REMEDIATION", "ActionPlan", "ApprovalBook", "ApprovalState", "AuditLog", "BreakerConfig", "BreakerState", "CircuitBreaker", "RateLimits",
    "Remediator", "RemediatorConfig", "RiskPolicy", "Transition", "as_insight", "episode_id", "idempotency_key",
    "judge_approval", "plan_for",
]
