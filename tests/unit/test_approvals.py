"""Human in the loop: risky actions are marked, held as pending, and released only by a valid signed approval."""

from __future__ import annotations

import dataclasses

import pytest

from infra.settings import ConfigError, Settings
from processors.remediation import ApprovalBook, ApprovalState, Remediator, RemediatorConfig, RiskPolicy, judge_approval
from processors.routing.policy import Router
from schemas.records import Approval, ApprovalDecision, Command
from schemas.signing import canonical_bytes, sign, verify
from streams.client.commands import CommandGate, Verdict

KEY = b"command-signing-key-0123456789abcdef"
APPROVAL_KEY = b"approval-signing-key-0123456789abcd"
NOW_MS = 1_000_000


def risky(command_id: str = "rb-1", **changes: object) -> Command:
    base = Command(command_id, NOW_MS, "wf-a", "rollback", "v2 regressed", "{}", NOW_MS + 600_000, "loopwise", "",
                   {"to_version": "v1"}, None, False, True)
    return sign(dataclasses.replace(base, **changes), KEY)


def approval(command: Command, decision: ApprovalDecision = ApprovalDecision.APPROVE, **changes: object) -> Approval:
    base = Approval(command.command_id, command.signature, decision, "ana", NOW_MS + 1_000, "looks right")
    return sign(dataclasses.replace(base, **changes), APPROVAL_KEY)


# ------------------------------------------------------------------ risk policy
def test_risk_policy_rules_and_bounds() -> None:
    policy = RiskPolicy.parse(["rollback", "shed_load:fraction>0.5", "scale_up:factor>=4"])
    assert policy.is_risky("rollback", {})
    assert not policy.is_risky("shed_load", {"fraction": "0.5"})
    assert policy.is_risky("shed_load", {"fraction": "0.51"})
    assert policy.is_risky("scale_up", {"factor": "4"}) and not policy.is_risky("scale_up", {"factor": "2"})
    assert policy.is_risky("shed_load", {}), "an unknown bound is for a person to judge"
    assert not policy.is_risky("open_circuit", {}) and not RiskPolicy().is_risky("rollback", {})


@pytest.mark.parametrize("spec", ["", "shed_load:", "shed_load:fraction", "shed_load:fraction=>1", "a b"])
def test_risk_policy_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="risky action"):
        RiskPolicy.parse([spec])


def test_settings_read_the_approval_variables() -> None:
    settings = Settings.from_env({"LOOPWISE_RISKY_ACTIONS": "rollback, shed_load:fraction>0.5",
                                  "LOOPWISE_APPROVAL_WINDOW_S": "60", "LOOPWISE_OPERATOR": "ana"})
    assert settings.risky_actions == ("rollback", "shed_load:fraction>0.5")
    assert settings.approval_window_s == 60.0 and settings.operator == "ana"
    assert settings.approval_key_bytes == settings.signing_key_bytes
    assert Settings.from_env({"LOOPWISE_APPROVAL_KEY": "x" * 32}).approval_key_bytes == b"x" * 32
    assert "x" * 32 not in repr(Settings.from_env({"LOOPWISE_APPROVAL_KEY": "x" * 32}))


def test_console_off_localhost_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="LOOPWISE_CONSOLE_TOKEN"):
        Settings.from_env({"LOOPWISE_CONSOLE_HOST": "0.0.0.0"})
    assert Settings.from_env({"LOOPWISE_CONSOLE_HOST": "0.0.0.0", "LOOPWISE_CONSOLE_TOKEN": "t"}).console_token


# ------------------------------------------------------------------ signatures
def test_old_signatures_still_verify_new_field_covered_only_when_set() -> None:
    plain = Command("c", 1, "t", "a", "r", "{}", 2, "i", "")
    assert b"requires_approval" not in canonical_bytes(plain)
    assert b'"requires_approval":true' in canonical_bytes(dataclasses.replace(plain, requires_approval=True))
    signed = sign(dataclasses.replace(plain, requires_approval=True), KEY)
    with pytest.raises(ValueError, match="forged"):  # dropping the flag breaks the signature
        verify(dataclasses.replace(signed, requires_approval=False), KEY)


def test_judge_approval() -> None:
    command = risky()
    assert judge_approval(approval(command), command, APPROVAL_KEY) is None
    assert judge_approval(approval(command), command, KEY) == "approval_forged"
    assert judge_approval(dataclasses.replace(approval(command), operator="eve"), command, APPROVAL_KEY) == \
        "approval_forged"
    other = risky("rb-2")
    assert judge_approval(approval(other), command, APPROVAL_KEY) == "other_command"
    tampered = sign(dataclasses.replace(command, params={"to_version": "v0"}), KEY)
    assert judge_approval(approval(command), tampered, APPROVAL_KEY) == "other_command"
    assert judge_approval(approval(command, ts_ms=command.expires_ts_ms + 1), command, APPROVAL_KEY) == "late"


# ------------------------------------------------------------------ the book
def test_book_states_in_any_arrival_order() -> None:
    book = ApprovalBook(APPROVAL_KEY)
    a, b, c = risky("a"), risky("b"), risky("c", expires_ts_ms=NOW_MS + 10)
    book.observe_approval(approval(a))  # before its command
    for command in (a, b, c):
        book.observe_command(command)
    book.observe_approval(approval(b, ApprovalDecision.REJECT))
    assert book.observe_approval(approval(b)) is False  # the first decision stands
    assert [book.state(x, NOW_MS + 100).value for x in "abc"] == ["approved", "rejected", "expired"]
    assert book.state("unknown", NOW_MS) is ApprovalState.NOT_REQUIRED
    assert book.pending(NOW_MS) == [c]
    book.observe_approval(dataclasses.replace(approval(c), signature="00"))
    assert book.invalid == 1 and book.state("c", NOW_MS) is ApprovalState.PENDING


def test_book_ignores_commands_not_needing_approval_and_is_bounded() -> None:
    book = ApprovalBook(APPROVAL_KEY, max_commands=2)
    book.observe_command(risky("x", requires_approval=False))
    for name in ("a", "b", "c"):
        book.observe_command(risky(name))
    assert list(book.commands) == ["b", "c"]


# ------------------------------------------------------------------ the gate
def test_gate_holds_a_risky_command_until_approved_then_accepts_it_once() -> None:
    gate = CommandGate(KEY, clock=lambda: NOW_MS)
    command = risky()
    assert gate.check(command) is Verdict.PENDING
    assert gate.check(command) is Verdict.PENDING, "a pending command is not remembered as applied"
    assert gate.check(command, is_approved=True) is Verdict.ACCEPTED
    assert gate.check(command, is_approved=True) is Verdict.DUPLICATE
    assert gate.check(dataclasses.replace(command, requires_approval=False)) is Verdict.FORGED


# ------------------------------------------------------------------ where risky commands come from
def test_remediator_marks_risky_commands_and_gives_people_time() -> None:
    config = RemediatorConfig(risk=RiskPolicy.parse(["close_circuit"]), approval_window_ms=900_000)
    remediator = Remediator(KEY, config)
    opened = remediator._emit("ep", "open_circuit", "r1", 0, NOW_MS, "errors", {}, {}, 60_000, None)
    closed = remediator._emit("ep", "close_circuit", "r1", 1, NOW_MS, "healthy", {}, {}, 60_000, None)
    assert opened is not None and closed is not None
    assert not opened.requires_approval and opened.expires_ts_ms == NOW_MS + 60_000
    assert closed.requires_approval and closed.expires_ts_ms == NOW_MS + 900_000
    verify(closed, KEY)


def test_router_does_not_obey_a_command_waiting_for_approval() -> None:
    router = Router()
    command = sign(Command("oc", NOW_MS, "r1", "open_circuit", "", "{}", NOW_MS + 60_000, "lw", "",
                           requires_approval=True), KEY)
    assert router.on_command(command) is False
    assert router.on_command(dataclasses.replace(command, requires_approval=False)) is True
