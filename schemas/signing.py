"""HMAC-SHA256 signatures of ``Command`` records: canonical bytes, ``sign`` and ``verify``.

The signature covers every field of a command except ``signature`` itself,
serialised deterministically (orjson, sorted keys, enums and mappings as plain
JSON), so a producer and a consumer in any language agree on the bytes::

    canonical = JSON({field: value for every field but "signature"}, keys sorted)
    signature = hex(HMAC-SHA256(key, canonical))

Keys never appear in errors, ``repr`` or logs: only the reason does.

>>> from schemas.records import Command
>>> cmd = Command("c1", 1_000, "route:a", "open_circuit", "errors", "{}", 61_000, "loopwise", "")
>>> signed = sign(cmd, b"k" * 32)
>>> verify(signed, b"k" * 32) is None
True
>>> try:
...     verify(signed, b"x" * 32)
... except SignatureError as exc:
...     print(exc.reason)
forged
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any, TypeVar

import orjson

from schemas.records import Approval, Command

#: What ``sign``/``verify`` accept: a command, or a person's approval of one.
Signed = TypeVar("Signed", Command, Approval)

#: Fields added after release 1 that the signature covers only when set, so every
#: signature made before they existed still verifies (and producers in other languages
#: that do not know them keep signing the same bytes).
_COVERED_WHEN_SET = frozenset({"requires_approval"})

__all__ = ["SignatureError", "canonical_bytes", "sign", "signature_of", "verify"]

REASONS = ("unsigned", "forged")


class SignatureError(ValueError):
    """A command's signature is missing (``unsigned``) or does not match (``forged``).

    Attributes:
        reason: one of ``REASONS``; safe to log and count (never holds key material).
    """

    def __init__(self, reason: str, command_id: str = "") -> None:
        super().__init__(f"command {command_id!r} refused: {reason}")
        self.reason = reason
        self.command_id = command_id


def _plain(value: Any) -> Any:
    # Mappings (possibly read-only proxies) become dicts so orjson sorts and serialises them.
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def canonical_bytes(command: Command | Approval) -> bytes:
    """The bytes the signature covers: every field but ``signature``, as sorted-key JSON.

    >>> canonical_bytes(Command("c", 1, "t", "a", "r", "{}", 2, "i", "sig", {"b": "2", "a": "1"}))[:40]
    b'{"action":"a","command_id":"c","evidence'
    """
    fields = {f.name: _plain(getattr(command, f.name)) for f in dataclasses.fields(command)
              if f.name != "signature" and (f.name not in _COVERED_WHEN_SET or getattr(command, f.name))}
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def signature_of(command: Command | Approval, key: bytes) -> str:
    """Hex HMAC-SHA256 of ``command``'s canonical bytes under ``key``."""
    if not key:
        raise ValueError("an empty signing key signs nothing")
    return hmac.new(key, canonical_bytes(command), hashlib.sha256).hexdigest()


def sign(command: Signed, key: bytes) -> Signed:
    """A copy of ``command`` carrying its signature under ``key`` (any previous one is replaced)."""
    return dataclasses.replace(command, signature=signature_of(command, key))


def verify(command: Command | Approval, key: bytes) -> None:
    """Return when ``command`` is signed by ``key``; raise ``SignatureError`` otherwise.

    Raises:
        SignatureError: ``unsigned`` (empty signature) or ``forged`` (any mismatch,
            compared in constant time).
    """
    if not command.signature:
        raise SignatureError("unsigned", command.command_id)
    expected = signature_of(command, key)
    if not hmac.compare_digest(expected.encode(), command.signature.encode()):
        raise SignatureError("forged", command.command_id)
