"""kill -9 the worker during an incident, start another: each command is applied once, the incident is not forgotten."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import Command, RequestEvent, Status, WorkflowDefinition
from schemas.serde import json_codec
from streams.client.commands import CommandGate, Verdict
from tests.factories import make_request, make_workflow
from tests.integration.worker_proc import produce_tracked, read_topic, start_worker

T0 = 1_700_000_000_000
STEP_MS = 50  # 20 requests per second of event time on the failing route


def _traffic(settings: Settings, start: int, stop: int, failing_from: int) -> list[tuple[str, bytes, bytes]]:
    codec = json_codec(RequestEvent)
    items = []
    for i in range(start, stop):
        failed = i >= failing_from
        request = make_request(f"r-{i:05d}", ts_ms=T0 + i * STEP_MS, status=Status.ERROR if failed else Status.OK,
                               error_type="upstream_5xx" if failed else None)
        items.append((settings.topic("requests"), request.request_id.encode(), codec.encode(request)))
    return items


def _commands(settings: Settings, at_least: int) -> list[Command]:
    codec = json_codec(Command)
    return [codec.decode(m.value()) for m in read_topic(settings, settings.topic("commands.remediation"),
                                                         at_least=at_least, timeout_s=90, quiet_s=2.0)]


def test_kill_9_during_an_incident_applies_each_command_once(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    workflow = make_workflow(fallback_route="local-small")
    produce_tracked(settings, [(settings.topic("workflows"), b"support-bot",
                                json_codec(WorkflowDefinition).encode(workflow))])
    first = start_worker(settings, tmp_path / "first.log")
    try:
        produce_tracked(settings, _traffic(settings, 0, 400, failing_from=200))  # gpt-large fails from 10 s
        before = _commands(settings, at_least=1)
        assert [(c.action, c.target) for c in before if c.action == "open_circuit"] == [("open_circuit", "gpt-large")]
        first.process.send_signal(signal.SIGKILL)  # mid-incident: the route is still failing
        assert first.process.wait(10) == -signal.SIGKILL
    finally:
        if first.is_running:
            first.process.kill()
    second = start_worker(settings, tmp_path / "second.log")
    try:
        # The incident goes on (90 s more of errors), then the route recovers.
        produce_tracked(settings, _traffic(settings, 400, 2200, failing_from=400)
                        + _traffic(settings, 2200, 4000, failing_from=10**9))
        after = _commands(settings, at_least=len(before) + 1)
    except BaseException:
        print(second.log_tail())
        raise
    finally:
        second.terminate()
    gate = CommandGate(settings.signing_key_bytes, clock=lambda: T0)
    verdicts = [(gate.check(c), c) for c in after]
    applied = [c for verdict, c in verdicts if verdict is Verdict.ACCEPTED]
    assert {verdict for verdict, _ in verdicts} <= {Verdict.ACCEPTED, Verdict.DUPLICATE}  # all signed, none expired
    # Re-sent after the restart only with the same idempotency key, so applied once:
    assert len({c.command_id for c in after}) == len(applied)
    # Not forgotten: the restarted worker knows the circuit is open and does not open it again.
    opens = Counter(c.target for c in applied if c.action == "open_circuit")
    assert opens["gpt-large"] == 1
    assert any(c.target == "gpt-large" and c.action == "close_circuit" for c in applied)  # and it recovers
