"""Commands are single-use: signature, expiry and replay, with a memory that survives a restart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from processors.commands import CommandGuard, GuardVerdict
from schemas.records import Command
from schemas.signing import sign
from streams.client.commands import CommandGate, Verdict

KEY = b"k" * 32
T0 = 1_700_000_000_000


def command(command_id: str = "c1", expires_ts_ms: int = T0 + 60_000, key: bytes = KEY) -> Command:
    return sign(Command(command_id, T0, "route-a", "open_circuit", "why", "{}", expires_ts_ms, "lw", ""), key)


def test_a_genuine_command_is_accepted_once() -> None:
    guard = CommandGuard(KEY)
    assert guard.check(command(), T0) is GuardVerdict.ACCEPTED
    assert guard.check(command(), T0 + 1) is GuardVerdict.DUPLICATE


@pytest.mark.parametrize(("cmd", "verdict"), [
    (command(key=b"x" * 32), GuardVerdict.FORGED),
    (dataclasses.replace(command(), signature=""), GuardVerdict.UNSIGNED),
    (dataclasses.replace(command(), target="route-b"), GuardVerdict.FORGED),
    (command(expires_ts_ms=T0 - 1), GuardVerdict.EXPIRED),
])
def test_forged_unsigned_tampered_and_expired_commands_are_refused(cmd: Command, verdict: GuardVerdict) -> None:
    guard = CommandGuard(KEY)
    assert guard.check(cmd, T0) is verdict
    assert len(guard) == 0


def test_a_forged_copy_does_not_block_the_genuine_command() -> None:
    guard = CommandGuard(KEY)
    assert guard.check(command(key=b"x" * 32), T0) is GuardVerdict.FORGED
    assert guard.check(command(), T0) is GuardVerdict.ACCEPTED


def test_ids_are_remembered_until_their_command_expires_then_expiry_refuses_them() -> None:
    guard = CommandGuard(KEY)
    for i in range(100):
        guard.check(command(f"c{i}", expires_ts_ms=T0 + 1_000 + i), T0)
    assert len(guard) == 100
    guard.check(command("late", expires_ts_ms=T0 + 10_000), T0 + 1_050)
    assert len(guard) == 100 - 50 + 1
    assert guard.check(command("c10", expires_ts_ms=T0 + 1_010), T0 + 1_050) is GuardVerdict.EXPIRED


def test_snapshot_is_plain_json_and_restores_the_memory() -> None:
    guard = CommandGuard(KEY)
    guard.check(command("c1"), T0)
    state = json.loads(json.dumps(guard.snapshot()))
    again = CommandGuard.restore(KEY, state)
    assert again.check(command("c1"), T0 + 1) is GuardVerdict.DUPLICATE
    assert again.check(command("c2"), T0 + 1) is GuardVerdict.ACCEPTED
    assert CommandGuard.restore(KEY, None).check(command("c1"), T0) is GuardVerdict.ACCEPTED
    with pytest.raises(ValueError):
        CommandGuard.restore(KEY, {"format": 99, "expiry": {}})


def test_a_restarted_client_gate_never_accepts_a_replayed_command(tmp_path: Path) -> None:
    ledger = tmp_path / "commands" / "app@lw.commands.json"
    gate = CommandGate(KEY, clock=lambda: T0)
    gate.make_durable(ledger)
    assert gate.check(command("c1")) is Verdict.ACCEPTED
    assert ledger.exists() and not ledger.with_name(ledger.name + ".tmp").exists()
    restarted = CommandGate(KEY, clock=lambda: T0 + 5)
    restarted.make_durable(ledger)
    assert restarted.check(command("c1")) is Verdict.DUPLICATE
    assert restarted.check(command("c2")) is Verdict.ACCEPTED
    assert restarted.check(command("c3", expires_ts_ms=T0)) is Verdict.EXPIRED


# -- the learn stage obeys each command once, and remembers it through a restart --

def learn_env() -> "StageEnv":
    from infra.settings import Secret, Settings
    from sinks.prometheus import Metrics
    from streams.stages import StageEnv

    settings = Settings(bootstrap_servers="unused:9092", topic_prefix="p.", signing_key=Secret(KEY.decode()))
    return StageEnv(settings, Metrics(), now_ms=lambda: T0 + 1_000)


def command_msg(cmd: Command, offset: int) -> "RawMessage":
    from schemas.serde import json_codec
    from streams.edge import RawMessage

    return RawMessage("p.repartition.loopwise.learn.commands.remediation", 0, offset, b"support-bot",
                      json_codec(Command).encode(cmd), T0)


def dead_reasons(out: list) -> list[str]:  # type: ignore[type-arg]
    from schemas.records import DeadLetter
    from schemas.serde import json_codec

    return [json_codec(DeadLetter).decode(o.value).reason for o in out if o.topic == "p.dlq"]


def test_the_learn_stage_refuses_forged_expired_and_replayed_commands_even_after_a_restart() -> None:
    from streams.stages import LearnStage

    env = learn_env()
    stage = LearnStage(env)
    obeyed: list[str] = []
    genuine = command("c1", expires_ts_ms=T0 + 60_000)
    out = stage.handle([command_msg(genuine, 0), command_msg(genuine, 1), command_msg(command("c2", key=b"x" * 32), 2),
                        command_msg(command("c3", expires_ts_ms=T0 - 1), 3)])
    assert dead_reasons(out) == ["command_duplicate", "signature_forged", "command_expired"]
    changes = stage.state_changes()
    assert any(key == b"commands" for _, key, _ in changes)

    restarted = LearnStage(learn_env())
    restarted.restore(0, [(key, value) for _, key, value in changes])
    core = restarted._core(0)
    core.observe_command = lambda c: obeyed.append(c.command_id)  # type: ignore[method-assign]
    again = restarted.handle([command_msg(genuine, 4), command_msg(command("c4"), 5)])
    assert dead_reasons(again) == ["command_duplicate"] and obeyed == ["c4"]
