"""The command gate: forged, unsigned, expired, replayed and dry-run commands never reach the application."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from schemas.records import Command
from schemas.signing import sign
from streams.client.commands import CommandGate, Verdict

KEY = b"application-shared-signing-key-01"
NOW_MS = 1_000_000


def command(command_id: str = "rm-1", **changes: object) -> Command:
    base = Command(command_id, NOW_MS - 5_000, "claude-mid", "open_circuit", "errors", "{}", NOW_MS + 60_000,
                   "loopwise", "", {"state": "open"}, "inc-1")
    return sign(dataclasses.replace(base, **changes), KEY)


@pytest.fixture
def gate() -> CommandGate:
    return CommandGate(KEY, clock=lambda: NOW_MS, max_remembered=3)


def test_a_valid_command_is_accepted_once(gate: CommandGate) -> None:
    assert gate.check(command()) is Verdict.ACCEPTED
    assert gate.check(command()) is Verdict.DUPLICATE
    assert gate.stats == {"accepted": 1, "duplicate": 1, "dry_run": 0, "unsigned": 0, "forged": 0, "expired": 0,
                          "unreadable": 0, "pending": 0, "rejected": 0}


def test_forged_signature_is_refused(gate: CommandGate) -> None:
    forged = dataclasses.replace(command(), target="gpt-large")
    assert gate.check(forged) is Verdict.FORGED
    assert gate.stats["forged"] == 1 and gate.stats["accepted"] == 0


def test_signed_with_another_key_is_forged(gate: CommandGate) -> None:
    other = sign(dataclasses.replace(command(), signature=""), b"someone-else-key-someone-else-key")
    assert gate.check(other) is Verdict.FORGED


def test_unsigned_is_refused(gate: CommandGate) -> None:
    assert gate.check(dataclasses.replace(command(), signature="")) is Verdict.UNSIGNED
    assert gate.stats["unsigned"] == 1


def test_expired_ttl_is_refused_and_the_boundary_is_still_valid(gate: CommandGate) -> None:
    assert gate.check(command("rm-old", expires_ts_ms=NOW_MS - 1)) is Verdict.EXPIRED
    assert gate.check(command("rm-edge", expires_ts_ms=NOW_MS)) is Verdict.ACCEPTED
    assert gate.stats["expired"] == 1


def test_replayed_command_is_refused_even_after_other_commands(gate: CommandGate) -> None:
    assert gate.check(command("rm-1")) is Verdict.ACCEPTED
    assert gate.check(command("rm-2")) is Verdict.ACCEPTED
    assert gate.check(command("rm-1")) is Verdict.DUPLICATE


def test_memory_is_bounded_oldest_forgotten_first(gate: CommandGate) -> None:
    for i in range(4):
        assert gate.check(command(f"rm-{i}")) is Verdict.ACCEPTED
    assert gate.check(command("rm-3")) is Verdict.DUPLICATE
    assert gate.check(command("rm-0")) is Verdict.ACCEPTED  # forgotten: max_remembered=3


def test_a_forged_copy_does_not_block_the_genuine_command(gate: CommandGate) -> None:
    assert gate.check(dataclasses.replace(command(), reason="tampered")) is Verdict.FORGED
    assert gate.check(command()) is Verdict.ACCEPTED


def test_dry_run_is_set_apart_and_does_not_block_the_live_command(gate: CommandGate) -> None:
    assert gate.check(command(is_dry_run=True)) is Verdict.DRY_RUN
    assert gate.check(command()) is Verdict.ACCEPTED
    assert gate.stats["dry_run"] == 1


def test_the_gate_needs_a_key() -> None:
    with pytest.raises(ValueError):
        CommandGate(b"")


def test_the_key_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from streams.client.commands import CommandClient

    class Message:
        def __init__(self, value: bytes) -> None:
            self._value = value

        def value(self) -> bytes:
            return self._value

        def topic(self) -> str:
            return "lw.commands.remediation"

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return 7

    from schemas.serde import json_codec

    client = CommandClient.__new__(CommandClient)  # the pure part only: no consumer
    client.gate, client._codec, client.on_command, client.on_dry_run = CommandGate(KEY, lambda: NOW_MS), \
        json_codec(Command), lambda c: None, None
    raw = json_codec(Command).encode(dataclasses.replace(command(), target="gpt-large"))
    with caplog.at_level(logging.WARNING):
        assert client._handle(Message(raw)) == 0
        assert client._handle(Message(b"not json")) == 0
    text = caplog.text
    assert "refused command rm-1 (open_circuit on gpt-large) at lw.commands.remediation[0]@7: forged" in text
    assert "refused unreadable command at lw.commands.remediation[0]@7" in text
    assert KEY.decode() not in text
    assert client.gate.stats["forged"] == 1 and client.gate.stats["unreadable"] == 1
