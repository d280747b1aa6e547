"""Human in the loop: which commands are risky, and what people decided about them.

``RiskPolicy`` says which actions need a person's approval (``LOOPWISE_RISKY_ACTIONS``):
an action name alone (``rollback``) or an action with a bound on one of its
parameters (``shed_load:fraction>0.5``, ``scale_up:factor>=4``). A risky command
is published with ``requires_approval=True``; consumers apply it only once a signed
``Approval`` for that exact command arrives on ``lw.approvals`` before it expires.

``judge_approval`` checks one approval against its command; ``ApprovalBook`` folds
commands and approvals into each command's state (what the CLI and the console show).
Pure: no Kafka, no clock (``now_ms`` is passed in).

>>> policy = RiskPolicy.parse(["rollback", "shed_load:fraction>0.5"])
>>> [policy.is_risky("rollback", {}), policy.is_risky("shed_load", {"fraction": "0.3"}),
...  policy.is_risky("shed_load", {"fraction": "0.8"}), policy.is_risky("open_circuit", {})]
[True, False, True, False]
"""

from __future__ import annotations

import hmac
import operator
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Iterable, Mapping

from schemas.records import Approval, ApprovalDecision, Command
from schemas.signing import SignatureError, verify

_RULE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(?::\s*([A-Za-z_][\w.-]*)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?\d+)?)\s*)?$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class RiskRule:
    """One risky action, optionally only beyond a bound on one parameter."""

    action: str
    param: str | None = None
    op: str = ">"
    bound: float = 0.0

    def matches(self, action: str, params: Mapping[str, str]) -> bool:
        """True when ``action`` with ``params`` falls under this rule.

        A parameter that is missing or not a number counts as beyond the bound:
        when loopwise cannot tell, a person decides.
        """
        if action != self.action:
            return False
        if self.param is None:
            return True
        try:
            value = float(params[self.param])
        except (KeyError, ValueError):
            return True
        return _OPS[self.op](value, self.bound)


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The rules of ``LOOPWISE_RISKY_ACTIONS``; an empty policy finds nothing risky."""

    rules: tuple[RiskRule, ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "RiskPolicy":
        """Rules from ``action`` or ``action:param>bound`` strings; ``ValueError`` names a bad one.

        >>> RiskPolicy.parse(["scale_up:factor>=4"]).rules[0]
        RiskRule(action='scale_up', param='factor', op='>=', bound=4.0)
        """
        rules = []
        for spec in specs:
            found = _RULE.match(spec)
            if found is None:
                raise ValueError(f"risky action {spec!r}: expected ACTION or ACTION:PARAM>BOUND (>, >=, <, <=)")
            action, param, op, bound = found.groups()
            rules.append(RiskRule(action, param, op or ">", float(bound) if bound else 0.0))
        return cls(tuple(rules))

    def is_risky(self, action: str, params: Mapping[str, str]) -> bool:
        """True when some rule matches: the command must wait for a person's approval."""
        return any(rule.matches(action, params) for rule in self.rules)


class ApprovalState(StrEnum):
    """Where a command stands in the approval flow (commands not needing one are ``not_required``)."""

    NOT_REQUIRED = "not_required"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


def judge_approval(approval: Approval, command: Command, key: bytes) -> str | None:
    """Why ``approval`` does not count for ``command`` (``None`` when it does).

    It must be signed with the approvals key, name this command and carry this
    command's own signature (so it approves exactly what the person saw), and be
    taken before the command expired.
    """
    try:
        verify(approval, key)
    except SignatureError as exc:
        return f"approval_{exc.reason}"
    if approval.command_id != command.command_id:
        return "other_command"
    if not hmac.compare_digest(approval.command_signature.encode(), command.signature.encode()):
        return "other_command"
    if approval.ts_ms > command.expires_ts_ms:
        return "late"
    return None


class ApprovalBook:
    """Commands needing approval and the decisions about them, bounded, in arrival order.

    Args:
        key: the approvals HMAC key; approvals that do not verify are ignored (and counted).
        max_commands: commands kept (the oldest are forgotten first).

    >>> from schemas.signing import sign
    >>> book = ApprovalBook(b"k" * 32)
    >>> cmd = sign(Command("c1", 0, "wf", "rollback", "", "{}", 60_000, "lw", "", requires_approval=True), b"s" * 32)
    >>> book.observe_command(cmd)
    >>> book.state("c1", now_ms=1_000).value
    'pending'
    >>> book.observe_approval(sign(Approval("c1", cmd.signature, ApprovalDecision.APPROVE, "ana", 2_000), b"k" * 32))
    True
    >>> book.state("c1", now_ms=3_000).value, book.decision("c1").operator
    ('approved', 'ana')
    """

    def __init__(self, key: bytes, max_commands: int = 10_000) -> None:
        self._key, self._max = key, max_commands
        self.commands: OrderedDict[str, Command] = OrderedDict()
        self._approvals: dict[str, list[Approval]] = {}
        self._decisions: dict[str, Approval] = {}
        self.invalid = 0

    def observe_command(self, command: Command) -> None:
        """Remember a command that needs approval (others are ignored)."""
        if not command.requires_approval:
            return
        self.commands[command.command_id] = command
        while len(self.commands) > self._max:
            old, _ = self.commands.popitem(last=False)
            self._decisions.pop(old, None)
            self._approvals.pop(old, None)
        for approval in self._approvals.pop(command.command_id, []):
            self._decide(command, approval)

    def observe_approval(self, approval: Approval) -> bool:
        """Fold in a decision; False when it does not count (yet: an approval may precede its command)."""
        command = self.commands.get(approval.command_id)
        if command is None:
            waiting = self._approvals.setdefault(approval.command_id, [])
            waiting.append(approval)
            del waiting[:-4]  # bounded: a handful per unknown id
            while len(self._approvals) > self._max:
                del self._approvals[next(iter(self._approvals))]
            return False
        return self._decide(command, approval)

    def _decide(self, command: Command, approval: Approval) -> bool:
        if command.command_id in self._decisions:
            return False  # the first valid decision stands: approvals are not revisable
        if judge_approval(approval, command, self._key) is not None:
            self.invalid += 1
            return False
        self._decisions[command.command_id] = approval
        return True

    def decision(self, command_id: str) -> Approval | None:
        """The valid decision taken on ``command_id``, if any."""
        return self._decisions.get(command_id)

    def state(self, command_id: str, now_ms: int) -> ApprovalState:
        """The command's state at ``now_ms``."""
        command = self.commands.get(command_id)
        if command is None:
            return ApprovalState.NOT_REQUIRED
        decided = self._decisions.get(command_id)
        if decided is not None:
            return ApprovalState.APPROVED if decided.decision is ApprovalDecision.APPROVE else ApprovalState.REJECTED
        return ApprovalState.EXPIRED if command.expires_ts_ms < now_ms else ApprovalState.PENDING

    def pending(self, now_ms: int) -> list[Command]:
        """Commands still waiting for a decision at ``now_ms``, oldest first."""
        return [c for c in self.commands.values() if self.state(c.command_id, now_ms) is ApprovalState.PENDING]
