"""The metrics stage in memory: decisions read back from their topics set the domain metrics; probes over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from infra.grafana import dashboard
from infra.settings import Settings
from schemas.records import (
    ArmStats, ArmStatus, Command, ExperimentDecision, ExperimentStatus, Incident, IncidentStatus, RouteProbability,
    RoutingPolicy, Severity,
)
from schemas.signing import sign
from sinks.prometheus import Metrics
from streams.stages.base import StageEnv
from streams.stages.telemetry import MetricsStage
from tests.factories import make_anomaly, make_workflow
from tests.unit.test_stages import NOW_MS, T0, msg

KEY = Settings().signing_key_bytes


def stage() -> MetricsStage:
    return MetricsStage(StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(),
                                 now_ms=lambda: NOW_MS))


def incident(status: str, severity: str = "critical", incident_id: str = "i1") -> Incident:
    return Incident(incident_id, T0, IncidentStatus(status), Severity(severity), "g", "gpt-large", T0, ("a1",), 1, "x")


def command(action: str, target: str = "gpt-large", key: bytes = KEY) -> Command:
    return sign(Command(f"c-{action}", T0, target, action, "why", "evidence", T0 + 60_000, "loopwise", ""), key)


def test_decisions_set_gauges_and_counters() -> None:
    s = stage()
    m = s.env.metrics
    policy = RoutingPolicy("support-bot", "summarize/public", T0, 7, "bandit-1",
                           (RouteProbability("gpt-large", 0.8, 0.7, 0.1, 50), RouteProbability("local", 0.2, 0.5, 0.2, 9)))
    arms = (ArmStats("a", 0.5, 10, 0.6, 0.5, 0.7, 0.4, 0.01, ArmStatus.ACTIVE),
            ArmStats("b", 0.5, 10, 0.7, 0.6, 0.8, 0.6, 0.01, ArmStatus.ACTIVE))
    experiment = ExperimentDecision("exp1", "support-bot", T0, ExperimentStatus.RUNNING, arms, 0.9, "n=20")
    s.handle_side([msg("p.decisions.routing", policy), msg("p.decisions.experiments", experiment)])
    s.handle([msg("p.incidents", incident("firing"), 0), msg("p.anomalies", make_anomaly(severity="critical")),
              msg("p.commands.remediation", command("open_circuit"), 0),
              msg("p.commands.remediation", command("open_circuit", target="forged", key=b"not-the-key"), 1)])
    assert m.value("loopwise_route_share", workflow="support-bot", segment="summarize/public", route="gpt-large") == 0.8
    assert m.value("loopwise_policy_version", workflow="support-bot", segment="summarize/public") == 7
    assert m.value("loopwise_experiment_allocation", experiment="exp1", variant="b") == 0.5
    assert m.value("loopwise_experiment_status", experiment="exp1", workflow="support-bot", status="running") == 1
    assert m.value("loopwise_incidents_open", severity="critical") == 1
    assert m.value("loopwise_anomalies_total", severity="critical", entity_kind="route", signal="error_rate") == 1
    assert m.value("loopwise_circuit_open", target="gpt-large") == 1
    assert m.value("loopwise_circuit_open", target="forged") == 0  # a forged command shows nowhere
    s.handle([msg("p.incidents", incident("resolved"), 1), msg("p.commands.remediation", command("close_circuit"), 2)])
    assert m.value("loopwise_incidents_open", severity="critical") == 0
    assert m.value("loopwise_circuit_open", target="gpt-large") == 0


def test_budget_comes_from_the_workflow_registry() -> None:
    s = stage()
    s.env.registry.update(make_workflow(budget_usd_per_hour=12.5))
    for listener in s.env.workflow_listeners:
        listener(make_workflow(budget_usd_per_hour=12.5))
    assert s.env.metrics.value("loopwise_budget_usd_per_hour", workflow="support-bot") == 12.5


def test_healthz_and_readyz_answer_from_the_probes() -> None:
    m = Metrics()
    state = {"ready": (False, "stage correlate: no partitions assigned")}
    m.probes["readyz"] = lambda: state["ready"]
    port = m.serve(0, "127.0.0.1")

    def get(path: str) -> tuple[int, dict[str, object] | str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                body = r.read().decode()
                return r.status, json.loads(body) if path != "/metrics" else body
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode())

    assert get("/healthz") == (200, {"ok": True, "reason": "no probe installed"})
    assert get("/readyz") == (503, {"ok": False, "reason": "stage correlate: no partitions assigned"})
    state["ready"] = (True, "3 stages ready")
    assert get("/readyz")[0] == 200
    status, text = get("/metrics")
    assert status == 200 and "loopwise_build_info{" in str(text)


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert (Path(dashboard.__file__).parent / "dashboards" / "loopwise.json").read_text() == dashboard.render()
