"""Records the console tests publish on the broker: what a worker writes during an outage, in its topics' formats."""

from __future__ import annotations

import time
from typing import Any

from infra.settings import Settings
from infra.topics import BY_NAME
from schemas.records import (
    ArmStats, ArmStatus, Command, DeadLetter, ExperimentDecision, ExperimentStatus, Incident, IncidentStatus, Insight,
    Outcome, RouteProbability, RoutingPolicy, Severity, Status,
)
from schemas.serde import RECORD_TYPES, json_codec
from schemas.signing import sign
from tests.factories import make_route, make_workflow
from tests.integration.conftest import produce_messages


def send(settings: Settings, logical: str, records: list[Any], key: str) -> None:
    codec = json_codec(RECORD_TYPES[BY_NAME[logical].record])
    produce_messages(settings, settings.topic(logical), [codec.encode(r) for r in records], key=key.encode())


def policy(version: int, p_a: float, ts_ms: int, segment: str = "default") -> RoutingPolicy:
    reasons = ("thompson sampling over 2 routes",) if p_a > 0.5 else ("gpt-large circuit open: failure rate 62%",)
    return RoutingPolicy("support-bot", segment, ts_ms, version, "router-1", (
        RouteProbability("gpt-large", p_a, 0.81, 0.04, 400), RouteProbability("claude-mid", 1 - p_a, 0.77, 0.05, 380)),
        reasons)


def risky_command(settings: Settings, command_id: str = "rb-console-1") -> Command:
    now_ms = int(time.time() * 1000)
    return sign(Command(command_id, now_ms, "support-bot", "rollback", "v2 regressed: quality -6%", "{}",
                        now_ms + 600_000, "loopwise", "", {"to_version": "v1"}, "inc-1", False, True),
                settings.signing_key_bytes)


def feed_outage(settings: Settings, now_ms: int) -> None:
    """A workflow, its policy before the outage, an experiment, an incident, insights, dead letters and outcomes."""
    send(settings, "workflows", [make_workflow(routes=(make_route("gpt-large"), make_route("claude-mid")),
                                               budget_usd_per_hour=5.0)], "support-bot")
    send(settings, "decisions.routing", [policy(1, 0.9, now_ms - 60_000)]
         + [policy(1, 0.6, now_ms - 60_000, segment=f"tenant-{i:04d}") for i in range(60)], "support-bot/default")
    arms = lambda n, m: (ArmStats("concise", 0.5, n, m, m - 0.05, m + 0.05, 0.7, 0.001, ArmStatus.ACTIVE),  # noqa: E731
                         ArmStats("detailed", 0.5, n, m - 0.02, m - 0.07, m + 0.03, 0.3, 0.02, ArmStatus.ACTIVE))
    send(settings, "decisions.experiments", [
        ExperimentDecision("prompt-style", "support-bot", now_ms - 60_000 + i * 10_000, ExperimentStatus.RUNNING,
                           arms(100 * (i + 1), 0.7 + 0.01 * i), 0.42, "{}") for i in range(5)], "prompt-style")
    send(settings, "incidents", [Incident("inc-1", now_ms - 30_000, IncidentStatus.FIRING, Severity.CRITICAL,
                                          "route:gpt-large", "route:gpt-large", now_ms - 31_000,
                                          ("anomaly-1", "anomaly-2"), 2, "gpt-large errors 62%")], "route:gpt-large")
    send(settings, "insights", [Insight("ins-1", now_ms - 20_000, "error_pattern", "gpt-large", "Timeouts from gpt-large",
                                        "upstream timeout after <*> ms (412 events)")], "gpt-large")
    send(settings, "dlq", [DeadLetter(settings.topic("requests"), 0, 17, b'{"request_id": 1}', "request_id: expected a string",
                                      "invalid", now_ms - 10_000, b"r-17")], settings.topic("requests"))
    send(settings, "outcomes", [
        Outcome(f"r{i}", now_ms - 50_000 + i * 500, now_ms - 50_000 + i * 500, "support-bot", "v1",
                "gpt-large" if i < 50 else "claude-mid", "default", Status.ERROR if 40 <= i < 50 else Status.OK,
                800.0, 0.002, 0.5 if 40 <= i < 50 else 0.8, 0.8, 0.9, 0.9, 1.0, True) for i in range(100)], "r")
