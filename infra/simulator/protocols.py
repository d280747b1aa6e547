"""The closed loop's seams: what a policy is asked, what it sees, and what it may send back.

Two kinds of policy drive the same ``Environment``:

* ``Policy`` (record path): asked per request with a real ``RouteRequest`` and
  the current ``WorkflowDefinition``; it observes the real records the
  environment produces (requests, feedback, metrics, logs, jobs, workflows).
  loopwise's processors, and the live Kafka loop, use this path.
* ``BatchPolicy`` (cheap path): asked once per time slice with arrays; the
  built-in baselines use it so a 1.44 M-request run stays fast. Both paths
  share the same truth and noise, so a policy scores the same on either.

Whatever a policy sends back (``Action``) is applied by the environment as the
live loop would apply what it consumes from Kafka: a ``Command`` (remediation,
scaling, rollback), a ``RoutingPolicy`` (route probabilities to sample from),
an ``ExperimentDecision`` (variant allocation, declared winner) or a
``Detection`` (the policy noticed a problem on an entity: scored as detection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import numpy.typing as npt

from schemas.records import Command, ExperimentDecision, RolloutStep, RouteRequest, RoutingPolicy, WorkflowDefinition

if TYPE_CHECKING:
    from infra.simulator.outcomes import SliceOutcomes
    from infra.simulator.traffic import TrafficSlice
    from infra.simulator.truth import Truth, TruthState

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Choice:
    """A policy's answer for one request; ``route=None`` defers to the published routing policy."""

    route: str | None
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    """A policy's claim that something is wrong with ``entity`` (a route or workflow) since ``ts_ms``."""

    entity: str
    ts_ms: int
    kind: str = "anomaly"


Action = Union[Command, RoutingPolicy, ExperimentDecision, Detection, RolloutStep]


@dataclass
class SliceView:
    """What a batch policy is shown for one slice.

    ``allowed[i, r]`` is true when request ``i`` may go to route ``r`` (same
    workflow, privacy within the route's ``max_privacy``, task capability, circuit
    closed). ``truth``, ``state`` and ``utilisation`` are the hidden truth: only
    the oracle and ``static-best`` (hindsight) may read them.
    """

    now_ms: int
    traffic: "TrafficSlice"
    allowed: npt.NDArray[np.bool_]
    truth: "Truth"
    state: "TruthState"
    utilisation: F64
    rate_ewma: F64
    capacity: F64
    load_decay: float
    slice_s: float
    duration_s: float


@runtime_checkable
class Policy(Protocol):
    """A record-path policy (per request, real records in and out)."""

    name: str
    impl: str

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        """Pick a route (and optionally a variant) for one request."""
        ...

    def observe(self, events: Sequence[object]) -> Sequence[Action]:
        """Learn from produced records; return actions for the environment to obey."""
        ...


@runtime_checkable
class BatchPolicy(Protocol):
    """A cheap-path policy (one call per slice, arrays in and out)."""

    name: str
    impl: str

    def choose_batch(self, view: SliceView) -> tuple[I64, I64 | None]:
        """Global route index per request (-1: none) and variant index per request (or ``None``)."""
        ...

    def observe_batch(self, outcomes: "SliceOutcomes") -> Sequence[Action]:
        """Learn from the slice's observable outcomes; return actions."""
        ...


def pick_allowed(allowed: npt.NDArray[np.bool_], u: F64) -> I64:
    """For each row, the allowed column at quantile ``u`` of its allowed set (-1 when none).

    >>> pick_allowed(np.array([[True, False, True], [False, False, False]]), np.array([0.9, 0.5])).tolist()
    [2, -1]
    """
    counts = allowed.sum(axis=1)
    target = np.minimum((u * counts).astype(np.int64), np.maximum(counts - 1, 0)) + 1
    pick = np.argmax(allowed.cumsum(axis=1) >= target[:, None], axis=1)
    return np.where(counts > 0, pick, -1).astype(np.int64)
