"""Bytes to typed records and back: the only loopwise code that sees bytes.

Two wire formats share one ``Codec`` interface:

- JSON (default): UTF-8 JSON through orjson, readable in Kafka UI.
- Confluent Schema Registry Avro (``registry_codec``, in ``schemas.registry``)
  when a registry URL is configured.

Every ``decode`` validates strictly (see ``schemas.validation``) and raises
only ``SchemaError`` for bad input, whose ``reason`` a dead-letter queue keeps.
``encode`` trusts its record: records are built by typed code, and validating
them again would double the hot path's cost.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import orjson

from schemas.catalog import RECORD_TYPES, schema_of
from schemas.fastpath import fast_loader
from schemas.records import DeadLetter
from schemas.validation import REASONS, SchemaError, compile_record, show

__all__ = [
    "REASONS", "RECORD_TYPES", "Codec", "JsonCodec", "SchemaError", "decode_for_display",
    "json_codec", "make_codec", "registry_codec", "schema_of",
]

R = TypeVar("R")
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
_DLQ_HEADROOM = 64 * 1024
_CONFLUENT_MAGIC = 0


class Codec(Protocol[R]):
    """What every wire format offers; agents hold one per topic."""

    record_type: type[R]

    def encode(self, record: R) -> bytes: ...
    def decode(self, raw: bytes | None) -> R: ...
    def to_dict(self, record: R) -> dict[str, Any]: ...
    def from_dict(self, data: Mapping[str, Any]) -> R: ...


def size_limit(record_type: type, max_event_bytes: int) -> int:
    """Largest accepted payload: a dead letter carries a whole event base64-encoded, so it gets room for one."""
    if record_type is DeadLetter:
        return max_event_bytes * 4 // 3 + 4 + _DLQ_HEADROOM
    return max_event_bytes


def check_raw(raw: Any, limit: int) -> None:
    """The checks before any parsing: present, bytes, not empty, not over ``limit``."""
    if raw is None or (isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) == 0):
        raise SchemaError("empty", "no payload")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise SchemaError("bad_wire_format", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > limit:
        raise SchemaError("too_large", f"{len(raw)} bytes exceeds the limit of {limit}")


def from_mapping(load: Any, data: Any) -> Any:
    """Run a compiled loader on a top-level payload, which must be an object."""
    if not isinstance(data, Mapping):
        raise SchemaError("not_an_object", f"expected an object, got {type(data).__name__} {show(data)}")
    return load(data if type(data) is dict else dict(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _diagnose(raw: bytes, error: orjson.JSONDecodeError, slow: Any) -> SchemaError:
    """Why orjson refused ``raw``: a finer reason where one can be found (error path only)."""
    if raw[:1] == bytes([_CONFLUENT_MAGIC]):
        return SchemaError("bad_wire_format", "Confluent-framed Avro (magic byte 0) where JSON was expected")
    try:
        # The stdlib parser accepts NaN/Infinity, so the reference loader can name the field.
        data = json.loads(bytes(raw))
    except (ValueError, RecursionError):
        return SchemaError("malformed", f"not valid UTF-8 JSON: {error}")
    try:
        from_mapping(slow, data)
    except SchemaError as exc:
        return exc
    return SchemaError("malformed", f"not valid UTF-8 JSON: {error}")


class JsonCodec(Generic[R]):
    """UTF-8 JSON wire format (orjson), strictly validated on decode."""

    __slots__ = ("record_type", "_load", "_slow", "_dump", "_limit")

    def __init__(self, record_type: type[R], *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.record_type = record_type
        self._load = fast_loader(record_type)
        self._slow, self._dump = compile_record(record_type)
        self._limit = size_limit(record_type, max_event_bytes)

    def encode(self, record: R) -> bytes:
        """JSON bytes of ``record``; ``TypeError`` for a record of another type."""
        if type(record) is not self.record_type:
            raise TypeError(f"expected {self.record_type.__name__}, got {type(record).__name__}")
        return orjson.dumps(record, default=_json_default)

    def decode(self, raw: bytes | None) -> R:
        """The validated record in ``raw``; ``SchemaError`` for anything else."""
        check_raw(raw, self._limit)
        try:
            data = orjson.loads(raw)  # type: ignore[arg-type]
        except orjson.JSONDecodeError as exc:
            raise _diagnose(raw, exc, self._slow) from None  # type: ignore[arg-type]
        if type(data) is not dict:
            raise SchemaError("not_an_object", f"expected an object, got {type(data).__name__} {show(data)}")
        record: R = self._load(data)
        return record

    def to_dict(self, record: R) -> dict[str, Any]:
        """A JSON-ready plain dict (enums as strings, tuples as lists, bytes as base64)."""
        out: dict[str, Any] = self._dump(record)
        return out

    def from_dict(self, data: Mapping[str, Any]) -> R:
        """The validated record in ``data`` (as ``to_dict`` gives it); ``SchemaError`` otherwise."""
        record: R = from_mapping(self._load, data)
        return record


def json_codec(record_type: type[R], *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> JsonCodec[R]:
    """The JSON codec of a record type (the default wire format)."""
    return JsonCodec(record_type, max_event_bytes=max_event_bytes)


def registry_codec(
    record_type: type[R], *, topic: str, registry_url: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Codec[R]:
    """The Confluent Schema Registry Avro codec of a record type; see ``schemas.registry``."""
    from schemas.registry import RegistryCodec  # confluent_kafka loads only when a registry is used

    return RegistryCodec(record_type, topic=topic, registry_url=registry_url, max_event_bytes=max_event_bytes)


def make_codec(
    record_type: type[R], *, topic: str, registry_url: str | None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Codec[R]:
    """The codec the configuration asks for: JSON when ``registry_url`` is None, else registry Avro."""
    if registry_url is None:
        return json_codec(record_type, max_event_bytes=max_event_bytes)
    return registry_codec(record_type, topic=topic, registry_url=registry_url, max_event_bytes=max_event_bytes)


def decode_for_display(raw: bytes, record_type: type | None, registry_url: str | None = None) -> dict[str, Any]:
    """A JSON-ready view of any payload for ``loopwise tail``, whatever its wire format.

    JSON objects come back as they are (plus ``_error`` when ``record_type`` is
    given and they are invalid); Confluent-framed Avro is read with the writer
    schema fetched from the registry; anything else is ``{"_raw_b64": ...}``.
    """
    raw = bytes(raw or b"")
    if raw[:1] == bytes([_CONFLUENT_MAGIC]) and len(raw) >= 5:
        from schemas.registry import display_avro

        return display_avro(raw, registry_url)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {"_raw_b64": base64.b64encode(raw).decode("ascii"), "_error": f"not JSON: {exc}"}
    if not isinstance(data, dict):
        return {"_raw_b64": base64.b64encode(raw).decode("ascii"), "_error": "not a JSON object"}
    if record_type is not None:
        try:
            json_codec(record_type, max_event_bytes=len(raw) + 1).decode(raw)
        except SchemaError as exc:
            data["_error"] = str(exc)
    return data
