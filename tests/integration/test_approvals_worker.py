"""End to end: a worker configured with a risky action publishes it pending; it is applied once, and only once approved."""

from __future__ import annotations

import time
from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import ApprovalDecision, Command, RequestEvent, Status, WorkflowDefinition
from schemas.serde import json_codec
from streams.approvals import decide, load_book
from streams.client import CommandClient
from tests.conftest import unique_name, wait_until
from tests.factories import make_request, make_workflow
from tests.integration.worker_proc import produce_tracked, read_topic, running_worker

STEP_MS = 50


def test_a_risky_command_from_the_worker_waits_for_a_person(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    workflow = make_workflow(fallback_route="local-small")
    produce_tracked(settings, [(settings.topic("workflows"), b"support-bot",
                                json_codec(WorkflowDefinition).encode(workflow))])
    t0 = int(time.time() * 1000) - 30_000  # near the wall clock: approvals and clients judge expiry by it
    codec = json_codec(RequestEvent)
    traffic = []
    for i in range(400):
        failed = i >= 200
        request = make_request(f"r-{i:05d}", ts_ms=t0 + i * STEP_MS, status=Status.ERROR if failed else Status.OK,
                               error_type="upstream_5xx" if failed else None)
        traffic.append((settings.topic("requests"), request.request_id.encode(), codec.encode(request)))
    env = {"LOOPWISE_RISKY_ACTIONS": "open_circuit", "LOOPWISE_STAGES": "workflows,remediate"}
    with running_worker(settings, tmp_path / "worker.log", env):
        produce_tracked(settings, traffic)
        messages = read_topic(settings, settings.topic("commands.remediation"), at_least=1, timeout_s=90, quiet_s=2.0)
    commands = [json_codec(Command).decode(m.value()) for m in messages]
    opened = [c for c in commands if c.action == "open_circuit"]
    assert opened and all(c.requires_approval for c in opened), commands
    assert opened[0].expires_ts_ms - opened[0].ts_ms >= 900_000  # the approval window

    applied: list[Command] = []
    with CommandClient(settings, settings.topic("commands.remediation"), settings.signing_key_bytes, applied.append,
                       group_id=unique_name("gateway-")) as client:
        wait_until(lambda: client.poll(0.2) >= 0 and client.stats["pending"] >= len(opened), timeout_s=30,
                   message=lambda: f"stats {client.stats}")
        assert applied == []
        decide(settings, load_book(settings), opened[0].command_id, ApprovalDecision.APPROVE, "ana", "route is down")
        wait_until(lambda: client.poll(0.2) >= 0 and applied, timeout_s=30, message=lambda: f"stats {client.stats}")
        for _ in range(5):
            client.poll(0.2)
    assert [c.command_id for c in applied] == [opened[0].command_id]
