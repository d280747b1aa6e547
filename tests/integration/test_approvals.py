"""Approvals on a real broker: a risky command is never applied without a signed approval; an approved one once."""

from __future__ import annotations

import dataclasses
import time

import pytest

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import ApprovalDecision, Command
from schemas.serde import json_codec
from schemas.signing import sign
from streams.approvals import ApprovalError, decide, load_book, publish, sign_decision
from streams.cli import main
from streams.client import CommandClient
from tests.conftest import unique_name, wait_until
from tests.integration.conftest import produce_messages


def _risky(settings: Settings, command_id: str, ttl_ms: int = 600_000) -> Command:
    now_ms = int(time.time() * 1000)
    return sign(Command(command_id, now_ms, "wf-a", "rollback", "v2 regressed", "{}", now_ms + ttl_ms, "loopwise", "",
                        {"to_version": "v1"}, None, False, True), settings.signing_key_bytes)


def test_risky_commands_wait_for_a_person(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    apply_topics(settings)
    topic = settings.topic("commands.remediation")
    approved, rejected, expiring = (_risky(settings, "rb-approved"), _risky(settings, "rb-rejected"),
                                    _risky(settings, "rb-expiring", ttl_ms=60_000))
    plain = sign(dataclasses.replace(approved, command_id="oc-plain", action="open_circuit", requires_approval=False,
                                     signature=""), settings.signing_key_bytes)
    codec = json_codec(Command)
    produce_messages(settings, topic, [codec.encode(c) for c in (approved, rejected, expiring, plain)], key=b"wf-a")

    applied: list[Command] = []
    skew_ms = [0]  # the application's clock, moved forward to let rb-expiring lapse
    with CommandClient(settings, topic, settings.signing_key_bytes, applied.append, group_id=unique_name("app-"),
                       clock=lambda: int(time.time() * 1000) + skew_ms[0]) as client:
        wait_until(lambda: client.poll(0.2) >= 0 and client.stats["pending"] == 3, timeout_s=30,
                   message=lambda: f"stats {client.stats}")
        assert [c.command_id for c in applied] == ["oc-plain"], "nothing risky is applied before a decision"

        # The CLI lists the pending ones (the same topics, read from the start).
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers or "")
        monkeypatch.setenv("LOOPWISE_TOPIC_PREFIX", settings.topic_prefix)
        monkeypatch.setenv("LOOPWISE_DATA_DIR", str(settings.data_dir))  # this installation's dev signing key
        assert main(["commands", "pending"]) == 0
        listed = capsys.readouterr().out
        assert "rb-approved" in listed and "rb-rejected" in listed and "oc-plain" not in listed

        # A forged approval (wrong key) changes nothing.
        publish(settings, sign_decision(settings.with_(approval_key=type(settings.approval_key)("x" * 32)), approved,
                                        ApprovalDecision.APPROVE, "mallory", "", int(time.time() * 1000)))
        assert main(["commands", "approve", "rb-approved", "--operator", "ana", "--reason", "checked"]) == 0
        decide(settings, load_book(settings), "rb-rejected", ApprovalDecision.REJECT, "bob", "not now")
        with pytest.raises(ApprovalError, match="not pending"):
            decide(settings, load_book(settings), "rb-approved", ApprovalDecision.APPROVE, "ana")

        skew_ms[0] = 120_000
        wait_until(lambda: client.poll(0.2) >= 0 and client.stats["rejected"] == 1
                   and client.stats["expired"] == 1 and not client.pending, timeout_s=30,
                   message=lambda: f"stats {client.stats}, pending {list(client.pending)}")
        assert [c.command_id for c in applied] == ["oc-plain", "rb-approved"]
        assert client.book.decision("rb-approved").operator == "ana"  # type: ignore[union-attr]

        # The same command delivered again is not applied twice.
        produce_messages(settings, topic, [codec.encode(approved)], key=b"wf-a")
        wait_until(lambda: client.poll(0.2) >= 0 and client.stats["duplicate"] == 1, timeout_s=20,
                   message=lambda: f"stats {client.stats}")
        assert [c.command_id for c in applied] == ["oc-plain", "rb-approved"]
