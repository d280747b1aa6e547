"""``loopwise commands pending | approve ID | reject ID``: people decide on risky commands."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from infra.settings import Settings


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``commands`` and its actions to the ``loopwise`` parser."""
    parser = sub.add_parser("commands", help="commands waiting for a person's approval (risky actions)")
    actions = parser.add_subparsers(metavar="ACTION")
    command(actions, "pending", "list the commands waiting for approval", _run_pending)
    for name, help_ in (("approve", "approve a pending command (it is applied by CommandClient)"),
                        ("reject", "reject a pending command (it is never applied)")):
        action = command(actions, name, help_, _run_approve if name == "approve" else _run_reject)
        action.add_argument("command_id", metavar="ID", help="the command's id (from `loopwise commands pending`)")
        action.add_argument("--operator", help="who decides (default: LOOPWISE_OPERATOR)")
        action.add_argument("--reason", default="", help="why, recorded with the decision")


def _run_pending(args: argparse.Namespace, settings: Settings) -> int:
    from streams.approvals import load_book

    book = load_book(settings)
    now_ms = int(time.time() * 1000)
    pending = book.pending(now_ms)
    if not pending:
        print("no command waits for approval")
        return 0
    print(f"{'ID':34} {'ACTION':14} {'TARGET':24} {'EXPIRES IN':>10}  REASON")
    for c in pending:
        print(f"{c.command_id:34} {c.action:14} {c.target:24} {(c.expires_ts_ms - now_ms) / 1000:>9.0f}s  {c.reason}")
    return 0


def _decide(args: argparse.Namespace, settings: Settings, decision: str) -> int:
    from schemas.records import ApprovalDecision
    from streams.approvals import ApprovalError, decide, load_book

    try:
        approval = decide(settings, load_book(settings), args.command_id, ApprovalDecision(decision),
                          args.operator or settings.operator or "", args.reason)
    except ApprovalError as exc:
        print(f"loopwise commands {decision}: {exc}", file=sys.stderr)
        return 1
    print(f"{approval.decision.value}d {approval.command_id} as {approval.operator} "
          f"(signed; on {settings.topic('approvals')})")
    return 0


def _run_approve(args: argparse.Namespace, settings: Settings) -> int:
    return _decide(args, settings, "approve")


def _run_reject(args: argparse.Namespace, settings: Settings) -> int:
    return _decide(args, settings, "reject")
