"""Capacity live on the broker: requests → load → forecast → scale commands, jobs → release commands,
obeyed by the simulator's control state; the desired replicas reach /metrics (what KEDA reads)."""

from __future__ import annotations

import time
from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from infra.simulator.control import ControlState
from infra.simulator.loader import load_scenario
from infra.simulator.truth import Truth
from schemas.records import Command, Forecast, JobSubmission, RequestEvent
from schemas.serde import json_codec
from schemas.signing import verify
from tests.conftest import wait_until
from tests.factories import make_request, make_route, make_workflow
from tests.integration.worker_proc import produce_tracked, read_topic, running_worker

MINUTE_MS = 60_000


def test_scaling_and_job_commands_flow_live_into_the_simulator(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    now = int(time.time() * 1000)
    t0 = now - 3_600_000 - now % MINUTE_MS  # an hour ago: event time, replayed fast
    workflow = make_workflow(ts_ms=t0, routes=(make_route("gpt-large", capacity_rps=2.0),))
    items = [(settings.topic("workflows"), b"support-bot", json_codec(type(workflow)).encode(workflow))]
    request_codec, job_codec = json_codec(RequestEvent), json_codec(JobSubmission)
    for i in range(6 * 60 * 5):  # 5 requests/s for 6 minutes: 2.5 replicas' worth at 2 rps each
        request = make_request(f"r-{i:05d}", ts_ms=t0 + i * 200)
        items.append((settings.topic("requests"), request.request_id.encode(), request_codec.encode(request)))
    jobs = [JobSubmission("etl-a", t0, "support-bot", 1, 2.0, 60.0, deadline_ts_ms=t0 + 7_200_000),
            JobSubmission("etl-b", t0, "support-bot", 1, 2.0, 60.0, deadline_ts_ms=t0 + 7_200_000,
                          depends_on=("etl-a",))]
    items += [(settings.topic("jobs"), j.job_id.encode(), job_codec.encode(j)) for j in jobs]
    env = {"LOOPWISE_STAGES": "workflows,load,forecast,scale,schedule"}
    with running_worker(settings, tmp_path / "worker.log", env) as worker:
        produce_tracked(settings, items)
        releases = _commands(settings, "commands.jobs", 1)
        assert [(c.target, c.action, c.params["attempt"]) for c in releases] == [("etl-a", "release", "1")]
        done = JobSubmission("etl-a", t0 + 120_000, "support-bot", 1, 2.0, 60.0, status="succeeded", attempt=1)
        produce_tracked(settings, [(settings.topic("jobs"), b"etl-a", job_codec.encode(done))])
        # The scheduler's clock is event time: the next minute of forecasts moves it.
        releases = _commands(settings, "commands.jobs", 2)
        scaling = _commands(settings, "commands.scaling", 1)
        forecasts = [json_codec(Forecast).decode(m.value())
                     for m in read_topic(settings, settings.topic("forecasts"), at_least=1)]
        desired = wait_until(lambda: worker.metric("loopwise_scaling_desired_replicas", target="gpt-large"), 20,
                             message="desired replicas never reached /metrics")
    assert [c.target for c in releases] == ["etl-a", "etl-b"]  # b only after a succeeded, each once
    route = [f for f in forecasts if f.entity == "route:gpt-large|rps"]
    assert route and abs(route[-1].value - 5.0) < 0.5 and route[-1].lower[0] <= route[-1].points[0] <= route[-1].upper[0]
    first = scaling[0]
    assert (first.target, first.action) == ("gpt-large", "scale_to") and int(first.params["replicas"]) >= 3
    assert desired == int(scaling[-1].params["replicas"])
    # The simulator obeys: the day scenario has a gpt-large route; capacity lands after the provisioning delay.
    control = ControlState(Truth(load_scenario("day"), 200.0))
    for command in scaling + releases:
        assert control.apply_command(command, command.ts_ms)
    (r,) = control.truth.route_index("gpt-large")
    expected = int(scaling[-1].params["replicas"]) * 2.0 / float(control.truth.capacity[r])
    assert first.params["replica_rps"] == "2"
    assert control.capacity_scale(first.ts_ms - 1)[r] == 1.0
    assert abs(control.capacity_scale(scaling[-1].ts_ms + control.provisioning_delay_ms)[r] - expected) < 1e-9
    assert set(control.released_jobs) == {("etl-a", 1), ("etl-b", 1)}


def _commands(settings: Settings, logical: str, at_least: int) -> list[Command]:
    codec = json_codec(Command)
    commands = [codec.decode(m.value()) for m in read_topic(settings, settings.topic(logical), at_least=at_least,
                                                            timeout_s=60, quiet_s=1.0)]
    for command in commands:
        verify(command, settings.signing_key_bytes)  # signed with the settings' key, or this raises
    return commands
