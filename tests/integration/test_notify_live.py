"""A notify worker on the broker: incident opened → webhook received (p99 printed), one page per incident."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import Incident, IncidentStatus, Severity
from schemas.serde import json_codec
from tests.conftest import wait_until
from tests.integration.worker_proc import produce_tracked, running_worker
from tests.unit.test_notify import Hook

T0 = 1_700_000_000_000
INCIDENTS = 25


def test_incidents_reach_the_webhook_fast_and_page_once_each(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    hook = Hook()
    arrived: dict[str, float] = {}

    class Arrivals(list):  # type: ignore[type-arg]
        def append(self, item: tuple[str, object]) -> None:  # arrival time per incident, as the server sees it
            path, body = item
            if path == "/pd":
                arrived.setdefault(body["dedup_key"], time.monotonic())  # type: ignore[index]
            super().append(item)

    hook.posts = Arrivals()
    receivers = tmp_path / "receivers.yml"
    receivers.write_text(f"""
receivers:
  - {{name: pd, type: pagerduty, url: "{hook.url}/pd", routing_key_env: LOOPWISE_RECEIVER_PD_KEY}}
routes:
  - {{match: {{kind: [incident]}}, receivers: [pd]}}
""")
    env = {"LOOPWISE_STAGES": "notify", "LOOPWISE_RECEIVERS_FILE": str(receivers),
           "LOOPWISE_RECEIVER_PD_KEY": "test-routing-key"}
    codec = json_codec(Incident)
    sent: dict[str, float] = {}
    try:
        with running_worker(settings, tmp_path / "worker.log", env) as worker:
            warm = Incident("inc-warm-up", T0, IncidentStatus.FIRING, Severity.CRITICAL, "w", "w", T0, ("a",), 1, "w")
            produce_tracked(settings, [(settings.topic("incidents"), b"w", codec.encode(warm))])
            wait_until(lambda: "inc-warm-up" in arrived, 60, interval_s=0.05,  # the stage has joined its group
                       message=lambda: f"no warm-up page; log:\n{worker.log_tail()}")
            for i in range(INCIDENTS):
                incident_id = f"inc-{i:03d}"
                items = [(settings.topic("incidents"), f"route-{i}".encode(), codec.encode(Incident(
                    incident_id, T0 + i * 1000 + u, IncidentStatus.FIRING, Severity.CRITICAL, f"g{i}", f"route-{i}",
                    T0 + i * 1000, ("a",), 1 + u, "error rate"))) for u in range(3)]  # opened, then two updates
                sent[incident_id] = time.monotonic()
                produce_tracked(settings, items)
                time.sleep(0.05)
            wait_until(lambda: len(arrived) == INCIDENTS + 1, 60, interval_s=0.1,
                       message=lambda: f"{len(arrived)} of {INCIDENTS} pages; log:\n{worker.log_tail()}")
            time.sleep(1.0)  # a quiet second: any duplicate page would arrive now
    finally:
        hook.server.shutdown()
    pages = Counter(body["dedup_key"] for path, body in hook.posts if path == "/pd")  # type: ignore[index]
    assert set(pages) == set(sent) | {"inc-warm-up"} and max(pages.values()) == 1, "one page per incident, however many updates"
    latencies = sorted(arrived[k] - sent[k] for k in sent)
    p50, p99 = statistics.median(latencies), latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"incident produced → webhook received: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
          f"over {len(latencies)} incidents; duplicate pages: 0")
    assert p99 < 1.0


def _version(worker: object) -> str:
    for (name, labels), _value in worker.samples().items():  # type: ignore[attr-defined]
        if name == "loopwise_build_info":
            return dict(labels)["version"]
    return ""
