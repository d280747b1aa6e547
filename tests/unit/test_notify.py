"""Notifications posted to a real local HTTP server: formats, dedup, silences, retries, escalation."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from infra.settings import Secret, Settings
from schemas.records import Command, Incident, IncidentStatus, Severity
from schemas.signing import sign
from sinks.notify import NotifyConfig, NotifyConfigError
from sinks.prometheus import Metrics
from streams.stages.base import StageEnv
from streams.stages.notify import NotifyStage
from tests.conftest import wait_until
from tests.unit.test_stages import NOW_MS, T0, msg


class Hook:
    """A local HTTP server recording every POST (path, JSON body); fails the first ``fail_first`` with 503."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.fail_first = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.fail_first > 0:
                    hook.fail_first -= 1
                    self.send_response(503)
                else:
                    hook.posts.append((self.path, body))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.server.shutdown()


def config(hook: Hook, **extra: Any) -> NotifyConfig:
    raw = {
        "receivers": [
            {"name": "pd", "type": "pagerduty", "url": hook.url + "/pd", "routing_key_env": "LOOPWISE_RECEIVER_PD"},
            {"name": "chat", "type": "slack", "url_env": "LOOPWISE_RECEIVER_SLACK"},
            {"name": "hook", "type": "webhook", "url": hook.url + "/hook"},
            {"name": "am", "type": "alertmanager", "url": hook.url + "/am"},
        ],
        "routes": [
            {"match": {"kind": ["incident"], "severity": ["critical"]}, "receivers": ["pd", "chat", "am"],
             "escalate_after_s": 0.2, "escalate_to": ["hook"]},
            {"match": {"kind": ["incident"]}, "receivers": ["hook"]},
            {"match": {"kind": ["command"]}, "receivers": ["chat"]},
        ],
        "retry": {"attempts": 4, "backoff_s": 0.01},
        **extra,
    }
    secrets = {"LOOPWISE_RECEIVER_PD": Secret("pd-routing-key"), "LOOPWISE_RECEIVER_SLACK": Secret(hook.url + "/slack")}
    return NotifyConfig.parse(raw, secrets)


def stage(cfg: NotifyConfig) -> NotifyStage:
    env = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(), now_ms=lambda: NOW_MS)
    return NotifyStage(env, cfg)


def incident(status: str, severity: str = "critical", incident_id: str = "inc-1", ts_ms: int = T0) -> Incident:
    return Incident(incident_id, ts_ms, IncidentStatus(status), Severity(severity), "grp", "gpt-large", T0, ("a1",),
                    2, "gpt-large error rate 40%")


def test_a_critical_incident_pages_once_per_state_in_every_format(hook: Hook) -> None:
    s = stage(config(hook))
    s.handle([msg("p.incidents", incident("firing"), i) for i in range(3)])  # three updates of one incident
    wait_until(lambda: len(hook.on("/pd")) == 1 and hook.on("/slack") and hook.on("/am/api/v2/alerts"), 15)
    s.handle([msg("p.incidents", incident("resolved"), 3), msg("p.incidents", incident("resolved"), 4)])
    wait_until(lambda: len(hook.on("/pd")) == len(hook.on("/am/api/v2/alerts")) == len(hook.on("/slack")) == 2, 15)
    trigger, resolve = hook.on("/pd")
    assert (trigger["event_action"], trigger["dedup_key"], trigger["routing_key"]) == ("trigger", "inc-1",
                                                                                      "pd-routing-key")
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "gpt-large"
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", "inc-1")
    (alert,) = hook.on("/am/api/v2/alerts")[0]
    assert alert["labels"]["alertname"] == "LoopwiseIncident" and alert["labels"]["severity"] == "critical"
    assert "endsAt" in hook.on("/am/api/v2/alerts")[1][0]
    assert "gpt-large error rate" in hook.on("/slack")[0]["text"]
    s.stop()


def test_warnings_route_elsewhere_and_commands_are_told_once(hook: Hook) -> None:
    s = stage(config(hook))
    key = s.env.settings.signing_key_bytes
    cmd = sign(Command("c-1", T0, "gpt-large", "open_circuit", "error rate", "ev", T0 + 60_000, "loopwise", ""), key)
    forged = sign(Command("c-2", T0, "gpt-large", "rollback", "x", "ev", T0 + 60_000, "loopwise", ""), b"other")
    s.handle([msg("p.incidents", incident("firing", "warning", "inc-2")), msg("p.commands.remediation", cmd, 0),
              msg("p.commands.remediation", cmd, 1), msg("p.commands.remediation", forged, 2)])
    wait_until(lambda: hook.on("/hook") and hook.on("/slack"), 15)
    assert hook.on("/hook")[0]["notifications"][0]["key"] == "inc-2" and not hook.on("/pd")
    assert len(hook.on("/slack")) == 1 and "open_circuit gpt-large" in hook.on("/slack")[0]["text"]
    s.stop()


def test_silences_retries_and_escalation(hook: Hook) -> None:
    silence = {"match": {"root_cause": ["gpt-large"]}, "starts": T0 - 1000, "ends": T0 + 60_000}
    s = stage(config(hook, silences=[silence]))
    s.handle([msg("p.incidents", incident("firing", ts_ms=T0 + 1000))])  # inside the maintenance window
    s.handle([msg("p.incidents", incident("firing", incident_id="inc-3", ts_ms=T0 + 120_000), 1)])
    hook.fail_first = 2  # the receivers answer 503 twice: retried with backoff, delivered once
    wait_until(lambda: len(hook.on("/pd")) == 1, 15)
    assert hook.on("/pd")[0]["dedup_key"] == "inc-3"
    m = s.env.metrics
    assert m.value("loopwise_notifications_total", receiver="-", outcome="silenced") == 1
    wait_until(lambda: m.value("loopwise_notifications_total", receiver="pd", outcome="retried") +
               m.value("loopwise_notifications_total", receiver="chat", outcome="retried") +
               m.value("loopwise_notifications_total", receiver="am", outcome="retried") == 2, 15)
    wait_until(lambda: s.is_due_idle_tick(0), 2)  # not resolved within 0.2 s: escalates to the webhook
    s.handle([])
    wait_until(lambda: hook.on("/hook"), 15)
    assert hook.on("/hook")[0]["notifications"][0]["key"] == "inc-3"
    assert m.value("loopwise_notifications_total", receiver="hook", outcome="escalated") == 1
    s.stop()


def test_the_receivers_file_names_secrets_it_does_not_hold(tmp_path: Path) -> None:
    path = tmp_path / "receivers.yml"
    path.write_text("receivers:\n  - {name: chat, type: slack, url_env: LOOPWISE_RECEIVER_SLACK}\nroutes: []\n")
    with pytest.raises(NotifyConfigError, match="LOOPWISE_RECEIVER_SLACK is not set"):
        NotifyConfig.load(path, {})
    settings = Settings.from_env({"LOOPWISE_RECEIVERS_FILE": str(path), "LOOPWISE_RECEIVER_SLACK": "https://x/y"})
    loaded = NotifyConfig.load(settings.receivers_file, settings.receiver_secrets)  # type: ignore[arg-type]
    assert loaded.receivers["chat"].url == "https://x/y" and "https://x/y" not in repr(settings)


def test_what_was_told_survives_a_restart_through_the_changelog(hook: Hook) -> None:
    first = stage(config(hook))
    first.handle([msg("p.incidents", incident("firing"), 0)])
    changes = first.state_changes()
    assert changes == [(0, b"t:inc-1", b"trigger")]
    wait_until(lambda: len(hook.on("/pd")) == 1, 15)
    first.stop()
    second = stage(config(hook))  # restarted: restores partition 0, then sees another update of the incident
    second.restore(0, [(k, v) for _p, k, v in changes])
    second.handle([msg("p.incidents", incident("firing", ts_ms=T0 + 5000), 1)])
    second.handle([msg("p.incidents", incident("resolved", ts_ms=T0 + 9000), 2)])
    wait_until(lambda: len(hook.on("/pd")) == 2, 15)
    assert [p["event_action"] for p in hook.on("/pd")] == ["trigger", "resolve"]  # no second page
    second.stop()
