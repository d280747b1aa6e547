"""The command client on a real broker: of a valid, a forged, an expired and a replayed command, one is applied."""

from __future__ import annotations

import dataclasses

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import Command
from schemas.serde import json_codec
from schemas.signing import sign
from streams.client import CommandClient
from tests.conftest import unique_name, wait_until
from tests.integration.conftest import produce_messages

KEY = b"integration-signing-key-0123456789"
NOW_MS = 1_800_000_000_000


def test_only_the_valid_command_reaches_the_callback_once(settings: Settings) -> None:
    apply_topics(settings)
    topic = settings.topic("commands.remediation")
    valid = sign(Command("rm-valid", NOW_MS, "claude-mid", "open_circuit", "failure rate 90%", '{"failures":45}',
                         NOW_MS + 60_000, "loopwise", "", {"state": "open"}, "inc-1"), KEY)
    forged = dataclasses.replace(valid, command_id="rm-forged", target="gpt-large")  # signature no longer matches
    expired = sign(dataclasses.replace(valid, command_id="rm-expired", expires_ts_ms=NOW_MS - 1), KEY)
    unsigned = dataclasses.replace(valid, command_id="rm-unsigned", signature="")
    dry_run = sign(dataclasses.replace(valid, command_id="rm-dry", is_dry_run=True), KEY)
    codec = json_codec(Command)
    sent = [valid, forged, expired, valid, unsigned, dry_run]  # the second ``valid`` is the replay
    produce_messages(settings, topic, [codec.encode(c) for c in sent], key=b"claude-mid")

    applied: list[Command] = []
    dry: list[Command] = []
    with CommandClient(settings, topic, KEY, applied.append, group_id=unique_name("app-"), on_dry_run=dry.append,
                       clock=lambda: NOW_MS) as client:
        wait_until(lambda: client.poll(0.2) >= 0 and sum(client.stats.values()) == len(sent), timeout_s=30,
                   message=lambda: f"stats {client.stats}")
        assert [c.command_id for c in applied] == ["rm-valid"]
        assert applied[0] == valid
        assert [c.command_id for c in dry] == ["rm-dry"]
        assert client.stats == {"accepted": 1, "duplicate": 1, "forged": 1, "expired": 1, "unsigned": 1,
                                "dry_run": 1, "unreadable": 0, "pending": 0, "rejected": 0}
