"""The Node.js example (examples/node, kafkajs) against the embedded broker and a worker: its request event
is a valid RequestEvent, it gets a route decision, and it verifies command signatures as schemas/signing.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from infra.admin import apply_topics
from infra.settings import Settings, Secret
from schemas.records import Command, RequestEvent
from schemas.serde import json_codec
from schemas.signing import sign
from tests.factories import make_workflow
from tests.integration.conftest import produce_messages
from tests.integration.worker_proc import read_topic, running_worker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
KEY = "node-test-signing-key-0123456789abcdef"


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if (EXAMPLE / "node_modules" / "kafkajs").exists():
        return EXAMPLE
    target = tmp_path_factory.mktemp("node-example")
    for name in ("package.json", "package-lock.json", "loopwise.js", "example.js"):
        shutil.copy(EXAMPLE / name, target / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=300, capture_output=True)
    return target


def signed_command(reason: str) -> Command:
    command = Command("cmd-1", 1_700_000_000_000, "route:gpt-large", "open_circuit", reason,
                      '{"error_rate": 0.42}', 1_700_000_600_000, "loopwise", "",
                      params={"b": "2", "a": "é ≥ 1", "z": "\n"}, incident_id="inc-1")
    return sign(command, KEY.encode())


def run_node(example_dir: Path, settings: Settings, command: Command) -> list[dict[str, str]]:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "LOOPWISE_TOPIC_PREFIX": settings.topic_prefix, "LOOPWISE_SIGNING_KEY": KEY,
           "COMMAND_JSON": json_codec(Command).encode(command).decode()}
    done = subprocess.run(["node", "example.js"], cwd=example_dir, env=env, capture_output=True, timeout=120, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_node_produces_consumes_and_verifies(settings: Settings, tmp_path: Path, example_dir: Path) -> None:
    settings = settings.with_(signing_key=Secret(KEY))
    apply_topics(settings)
    produce_messages(settings, settings.topic("workflows"), [make_workflow()], key="support-bot")
    with running_worker(settings, tmp_path / "worker.log", {"LOOPWISE_STAGES": "route"}):
        steps = run_node(example_dir, settings, signed_command("p95 latency ≥ 2 s"))
        produced, decision, verified = steps
        assert decision["request_id"] == produced["request_id"] and decision["route"] in ("gpt-large", "local-small")
        assert verified == {"step": "verified", "command_id": "cmd-1", "verdict": "valid"}
        (message,) = [m for m in read_topic(settings, settings.topic("requests"), 1)]
        event = json_codec(RequestEvent).decode(message.value())  # the Node event passes loopwise's validation
        assert event.request_id == produced["request_id"] and dict(message.headers() or [])["traceparent"]
        forged = signed_command("p95 latency ≥ 2 s")
        forged = Command(**{**{f: getattr(forged, f) for f in forged.__dataclass_fields__}, "reason": "other"})
        assert run_node(example_dir, settings, forged)[2]["verdict"] == "command cmd-1: forged"
