"""HMAC signatures of commands: canonical bytes, sign/verify, refusal reasons, the production key rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.settings import ConfigError, Settings
from schemas.records import Command
from schemas.signing import SignatureError, canonical_bytes, sign, signature_of, verify

KEY = b"k" * 32


def command(**changes: object) -> Command:
    base = Command("rm-1", 1_000, "claude-mid", "open_circuit", "errors", '{"failures":30}', 61_000, "loopwise", "",
                   {"state": "open"}, "inc-1", False)
    return dataclasses.replace(base, **changes)


def test_canonical_bytes_are_sorted_json_without_the_signature() -> None:
    assert canonical_bytes(command(signature="whatever")) == (
        b'{"action":"open_circuit","command_id":"rm-1","evidence":"{\\"failures\\":30}","expires_ts_ms":61000,'
        b'"incident_id":"inc-1","is_dry_run":false,"issuer":"loopwise","params":{"state":"open"},"reason":"errors",'
        b'"target":"claude-mid","ts_ms":1000}')


def test_params_order_does_not_change_the_signature() -> None:
    a = sign(command(params={"a": "1", "b": "2"}), KEY)
    b = sign(command(params={"b": "2", "a": "1"}), KEY)
    assert a.signature == b.signature


def test_signature_is_hex_hmac_sha256() -> None:
    import hashlib
    import hmac

    signed = sign(command(), KEY)
    assert signed.signature == hmac.new(KEY, canonical_bytes(command()), hashlib.sha256).hexdigest()
    assert len(signed.signature) == 64
    verify(signed, KEY)


def test_unsigned_is_refused_as_unsigned() -> None:
    with pytest.raises(SignatureError) as info:
        verify(command(), KEY)
    assert info.value.reason == "unsigned"
    assert "rm-1" in str(info.value)


def test_wrong_key_is_refused_as_forged_and_the_key_is_not_in_the_message() -> None:
    with pytest.raises(SignatureError) as info:
        verify(sign(command(), b"attacker-key-attacker-key-000000"), KEY)
    assert info.value.reason == "forged"
    assert KEY.decode() not in str(info.value)


@pytest.mark.parametrize("field,value", [
    ("target", "gpt-large"), ("action", "close_circuit"), ("expires_ts_ms", 10**13), ("is_dry_run", True),
    ("params", {"state": "closed"}), ("incident_id", None), ("command_id", "rm-2"), ("evidence", "{}"),
])
def test_any_changed_field_is_forged(field: str, value: object) -> None:
    tampered = dataclasses.replace(sign(command(), KEY), **{field: value})
    with pytest.raises(SignatureError) as info:
        verify(tampered, KEY)
    assert info.value.reason == "forged"


def test_an_empty_key_signs_nothing() -> None:
    with pytest.raises(ValueError):
        signature_of(command(), b"")


@given(target=st.text(max_size=20), ts=st.integers(0, 2**53), params=st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
def test_sign_then_verify_round_trips(target: str, ts: int, params: dict[str, str]) -> None:
    signed = sign(command(target=target, ts_ms=ts, params=params), KEY)
    verify(signed, KEY)
    assert sign(signed, KEY) == signed  # re-signing ignores the old signature


def test_missing_key_in_production_is_a_startup_config_error() -> None:
    with pytest.raises(ConfigError, match="LOOPWISE_SIGNING_KEY"):
        Settings.from_env({"LOOPWISE_MODE": "production"})
