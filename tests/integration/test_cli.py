"""The ``loopwise`` command line as a user runs it: topics apply, produce (validated and raw), tail of the DLQ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from infra.admin import apply_topics
from infra.settings import Settings
from infra.topics import TOPICS
from schemas.records import RequestEvent
from schemas.serde import json_codec
from tests.factories import make_request
from tests.integration.conftest import consume_messages
from tests.integration.worker_proc import read_topic, running_worker, wait_for_metric

_REPO = Path(__file__).resolve().parents[2]


def loopwise(settings: Settings, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``loopwise ARGS`` on the test's cluster and topic prefix, as a user's shell would."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOOPWISE_")}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
                "LOOPWISE_TOPIC_PREFIX": settings.topic_prefix, "LOOPWISE_DATA_DIR": str(settings.data_dir)})
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=_REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def request_line(request_id: str) -> bytes:
    return json_codec(RequestEvent).encode(make_request(request_id))


def test_topics_apply_twice_creates_then_reports_only_unchanged(settings: Settings) -> None:
    names = sorted(settings.topic(spec.name) for spec in TOPICS)
    first = loopwise(settings, "topics", "apply")
    second = loopwise(settings, "topics", "apply")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert sorted(first.stdout.splitlines()) == [f"created    {name}" for name in names]
    assert sorted(second.stdout.splitlines()) == [f"unchanged  {name}" for name in names]


def test_produce_sends_valid_lines_and_reports_invalid_ones_by_line_number(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(request_line("cli-1") + b"\n" + b'{"request_id": "cli-2", "ts_ms": -1}\n')
    result = loopwise(settings, "produce", settings.topic("requests"), str(path))
    assert result.returncode == 1
    assert "line 2: out_of_range: field 'ts_ms'" in result.stderr and "line 1" not in result.stderr, result.stderr
    assert f"sent 1 to {settings.topic('requests')}; 1 invalid, 0 failed" in result.stderr
    (message,) = read_topic(settings, settings.topic("requests"), at_least=1)
    assert (message.key(), message.value()) == (b"cli-1", request_line("cli-1"))


def test_produce_raw_sends_the_bytes_unvalidated(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    path = tmp_path / "raw.txt"
    path.write_bytes(b"not json at all\n[1, 2]\n")
    result = loopwise(settings, "produce", settings.topic("requests"), "--raw", str(path), "--key", "k-1")
    assert result.returncode == 0, result.stderr
    messages = consume_messages(settings, settings.topic("requests"), 2)
    assert sorted((m.key(), m.value()) for m in messages) == [(b"k-1", b"[1, 2]"), (b"k-1", b"not json at all")]


def test_malformed_event_produced_raw_is_processed_to_the_dlq_and_tailed_with_its_reason(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    path = tmp_path / "bad.txt"
    path.write_bytes(b'{"request_id": "oops"\n')
    with running_worker(settings, tmp_path / "worker.log") as worker:
        assert loopwise(settings, "produce", settings.topic("requests"), "--raw", str(path)).returncode == 0
        wait_for_metric(worker, "loopwise_dlq_total", 1, topic=settings.topic("requests"), reason="malformed")
    result = loopwise(settings, "tail", settings.topic("dlq"), "--from-beginning", "--max", "1", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    letter = orjson.loads(line)
    assert (letter["reason"], letter["source_topic"], letter["offset"]) == ("malformed", settings.topic("requests"), 0)
    assert letter["value_text"] == '{"request_id": "oops"'
    assert letter["error"].startswith("malformed: not valid UTF-8 JSON")
