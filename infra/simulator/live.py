"""Live mode (Kafka transport): a documented stub until the stream layer's owner builds it.

The live driver will wrap the same ``Environment`` as offline mode:
``env.step(now + slice)`` returns records to produce to ``lw.requests``,
``lw.feedback``, ``lw.metrics``, ``lw.logs``, ``lw.jobs`` and ``lw.workflows``
(paced by ``speed``), and every record consumed from loopwise's decision
topics goes to ``env.apply`` (commands, routing policies, experiment
decisions; anomalies/incidents as ``Detection``). With a record-path policy
whose ``choose`` returns ``Choice(None)`` the environment samples each
request's route from the latest published ``RoutingPolicy``.
"""

from __future__ import annotations

from infra.simulator.errors import SimulatorError
from infra.simulator.scenario import Scenario


def run_live(scenario: Scenario, policy_name: str, seed: int, duration_s: float, rate: float, speed: float) -> int:
    """Run ``scenario`` against a running loopwise worker over Kafka (not built yet).

    Args:
        scenario: The validated scenario.
        policy_name: Policy the scorecard is labelled with (``loopwise`` in live mode).
        seed: Traffic and noise seed.
        duration_s: Simulated duration.
        rate: Base arrival rate (requests/s).
        speed: Simulated seconds per wall-clock second.

    Raises:
        SimulatorError: always, until the live transport exists.
    """
    raise SimulatorError("live mode needs the worker: use `loopwise up --simulate`")
