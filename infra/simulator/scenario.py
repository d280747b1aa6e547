"""Scenario model: the frozen dataclasses a scenario YAML file is validated into.

Times inside a scenario are seconds from the scenario's start; ``start_ms``
anchors them to epoch milliseconds so every event gets a reproducible
``ts_ms``. See ``infra.simulator.loader`` for the YAML format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from infra.simulator.errors import ScenarioError
from schemas.records import Objective, PrivacyLevel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

EventKind = Literal["degradation", "outage", "price_change", "capacity_squeeze", "canary", "unavailable", "tenant_mix"]
FEEDBACK_KINDS = ("thumbs", "rating", "edit", "delete", "dwell", "task_completed")


def parse_duration_s(value: str | float | int, key: str = "duration") -> float:
    """Parse ``30s``, ``20m``, ``2h``, ``1d``, ``250ms`` or a bare number of seconds.

    >>> parse_duration_s("2h"), parse_duration_s("20m"), parse_duration_s(45), parse_duration_s("250ms")
    (7200.0, 1200.0, 45.0, 0.25)
    """
    if isinstance(value, bool):
        raise ScenarioError(f"{key}: expected a duration like 30s/20m/2h, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ScenarioError(f"{key}: expected a duration like 30s/20m/2h, got {value!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Lognormal latency with a queueing term: ``median * f(u) * exp(sigma * z)``.

    ``f(u) = 1 + load_coef * u / (1 - min(u, u_max))`` where ``u`` is the route's
    utilisation (arrival rate / capacity); past ``u = 1`` the route also answers
    ``1 - 1/u`` of its requests with a rate-limit error (429).
    """

    median_ms: float
    sigma: float = 0.3
    load_coef: float = 0.1
    u_max: float = 0.95

    def load_factor(self, utilisation: float) -> float:
        """Multiplier of the median latency at a given utilisation."""
        u = min(max(utilisation, 0.0), self.u_max)
        return 1.0 + self.load_coef * u / (1.0 - u)


@dataclass(frozen=True, slots=True)
class RouteTruth:
    """A route as the simulator knows it: its spec plus its true behaviour."""

    name: str
    provider: str
    is_local: bool
    max_privacy: PrivacyLevel
    cost_per_1k_in_usd: float
    cost_per_1k_out_usd: float
    latency: LatencyModel
    quality: Mapping[str, float]
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_ms: float = 30000.0
    capacity_rps: float = 1e9
    #: Quality change per doubling of a request's tokens_in over its task's median (prompt-length sensitivity).
    quality_per_doubling: float = 0.0


@dataclass(frozen=True, slots=True)
class VariantTruth:
    """A prompt variant and its true additive effect on quality."""

    name: str
    effect: float = 0.0
    is_control: bool = False


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant (segment source): traffic share, task mix, privacy mix and priority mix."""

    name: str
    share: float
    tasks: Mapping[str, float]
    privacy: Mapping[PrivacyLevel, float]
    priority: Mapping[int, float] = field(default_factory=lambda: {1: 1.0})


@dataclass(frozen=True, slots=True)
class WorkflowTruth:
    """One workflow: routes, variants, tenants, objective and budget."""

    name: str
    version: str
    share: float
    routes: tuple[RouteTruth, ...]
    tenants: tuple[Tenant, ...]
    variants: tuple[VariantTruth, ...] = ()
    objective: Objective = field(default_factory=Objective)
    budget_usd_per_hour: float | None = None
    fallback_route: str | None = None
    experiment: str | None = None
    feedback_window_s: float = 3600.0
    budget_mode: str = "soft"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task type and its token sizes (lognormal around the medians)."""

    name: str
    tokens_in: float
    tokens_out: float
    tokens_sigma: float = 0.4


@dataclass(frozen=True, slots=True)
class Spike:
    """A traffic spike: the arrival rate is multiplied for a while."""

    start_s: float
    duration_s: float
    multiplier: float


@dataclass(frozen=True, slots=True)
class LoadModel:
    """System load over time: ``rate * (1 + amp * cos(2pi (hour - peak) / 24)) * spikes``."""

    arrival: Literal["poisson", "even"] = "poisson"
    daily_amplitude: float = 0.0
    peak_hour: float = 14.0
    spikes: tuple[Spike, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedbackKindSpec:
    """How often one feedback kind arrives (at quality 0.5) and its lognormal delay."""

    rate: float
    delay_median_s: float
    delay_sigma: float


@dataclass(frozen=True, slots=True)
class FeedbackModel:
    """Feedback behaviour; how each kind's probability and value follow quality is in ``feedback.py``."""

    kinds: Mapping[str, FeedbackKindSpec]
    quality_noise: float = 0.05


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A scheduled change of the truth.

    ``target`` is a route name (every workflow's route of that name) or, for
    ``canary`` and ``tenant_mix``, a workflow name. ``unavailable`` takes the
    route out of the workflow (not offered, not published) while it lasts:
    a route added mid-run is unavailable from 0; one removed, to the end.
    ``tenant_mix`` replaces the tenants' shares (params keyed by tenant name). ``end_s`` is ``None`` when the change lasts to
    the end of the run. ``params`` holds the kind's numbers (see the loader).
    """

    kind: EventKind
    target: str
    start_s: float
    end_s: float | None
    params: Mapping[str, float | str | tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A complete, validated scenario."""

    name: str
    description: str
    start_ms: int
    duration_s: float
    rate: float
    tasks: tuple[TaskSpec, ...]
    workflows: tuple[WorkflowTruth, ...]
    load: LoadModel
    feedback: FeedbackModel
    timeline: tuple[TimelineEvent, ...] = ()
    slice_ms: int = 1000
    load_window_s: float = 5.0
    metrics_interval_s: float = 10.0
    jobs_per_hour: float = 6.0
