"""Confluent Schema Registry wire format: Avro framed with a schema id (magic byte 0).

Built on confluent-kafka's ``AvroSerializer``/``AvroDeserializer`` and
``SchemaRegistryClient``. ``mock://name`` URLs give confluent-kafka's in-memory
registry; one client is kept per URL so that, as with a real server, every
codec of a process sees the schemas the others registered.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from schemas.catalog import schema_of
from schemas.fastpath import fast_loader
from schemas.serde import JsonCodec, check_raw, size_limit
from schemas.validation import SchemaError, compile_record

R = TypeVar("R")
_CLIENTS: dict[str, SchemaRegistryClient] = {}
_HEADER = struct.Struct(">bI")
_NOT_FOUND = 404
# What corrupt Avro bytes make fastavro/confluent raise. Deliberately not Exception:
# an unreachable registry (httpx/OS errors) is an outage to surface, not bad input to dead-letter.
_CORRUPT = (SerializationError, EOFError, IndexError, KeyError, ValueError, TypeError, OverflowError,
            struct.error, AssertionError)


def registry_client(url: str) -> SchemaRegistryClient:
    """The shared client of a registry URL (``http(s)://...`` or ``mock://name``)."""
    client = _CLIENTS.get(url)
    if client is None:
        client = _CLIENTS[url] = SchemaRegistryClient.new_client({"url": url})
    return client


class RegistryCodec(Generic[R]):
    """Avro in the Confluent wire format; the schema is registered under ``<topic>-value``.

    Decoding resolves the writer's schema (fetched by id) against this
    version's schema, so payloads written by an older compatible version decode.
    """

    def __init__(self, record_type: type[R], *, topic: str, registry_url: str, max_event_bytes: int) -> None:
        self.record_type = record_type
        client = registry_client(registry_url)
        schema_str = json.dumps(schema_of(record_type))
        self._json = JsonCodec(record_type, max_event_bytes=max_event_bytes)
        self._load = fast_loader(record_type, is_b64=False)
        self._dump = compile_record(record_type, is_b64=False)[1]
        self._limit = size_limit(record_type, max_event_bytes)
        self._context = SerializationContext(topic, MessageField.VALUE)
        self._serializer = AvroSerializer(client, schema_str, to_dict=lambda record, _ctx: self._dump(record))
        self._deserializer = AvroDeserializer(client, schema_str)

    def encode(self, record: R) -> bytes:
        """Confluent-framed Avro bytes of ``record`` (registers the schema on first use)."""
        if type(record) is not self.record_type:
            raise TypeError(f"expected {self.record_type.__name__}, got {type(record).__name__}")
        raw: bytes = self._serializer(record, self._context)
        return raw

    def decode(self, raw: bytes | None) -> R:
        """The validated record in ``raw``; ``SchemaError`` for bad input.

        An unreachable registry is not bad input: its errors propagate.
        """
        check_raw(raw, self._limit)
        assert raw is not None  # check_raw rejected None
        if len(raw) < _HEADER.size or raw[0] != 0:
            raise SchemaError("bad_wire_format", "not Confluent-framed Avro (expected magic byte 0 and a schema id)")
        try:
            data = self._deserializer(bytes(raw), self._context)
        except SchemaRegistryError as exc:
            if exc.http_status_code != _NOT_FOUND:
                raise
            raise SchemaError("bad_wire_format", f"unknown schema id {_HEADER.unpack_from(raw)[1]}") from exc
        except _CORRUPT as exc:
            raise SchemaError("malformed", f"corrupt Avro payload: {type(exc).__name__}: {exc}") from exc
        if not isinstance(data, dict):
            raise SchemaError("not_an_object", f"expected a record, got {type(data).__name__}")
        record: R = self._load(data)
        return record

    def to_dict(self, record: R) -> dict[str, Any]:
        """A JSON-ready plain dict, as ``JsonCodec.to_dict``."""
        return self._json.to_dict(record)

    def from_dict(self, data: Mapping[str, Any]) -> R:
        """The validated record in ``data``, as ``JsonCodec.from_dict``."""
        return self._json.from_dict(data)


def _json_ready(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _json_ready(element) for key, element in value.items()}
    if isinstance(value, list):
        return [_json_ready(element) for element in value]
    return value


def display_avro(raw: bytes, registry_url: str | None) -> dict[str, Any]:
    """A JSON-ready view of Confluent-framed Avro, read with its writer schema."""
    schema_id = _HEADER.unpack_from(raw)[1]
    fallback = {"_raw_b64": base64.b64encode(raw).decode("ascii"), "_schema_id": schema_id}
    if registry_url is None:
        return {**fallback, "_error": "Confluent-framed Avro, but no schema registry URL is configured"}
    try:
        writer = fastavro.parse_schema(json.loads(registry_client(registry_url).get_schema(schema_id).schema_str or "null"))
        data = fastavro.schemaless_reader(io.BytesIO(raw[_HEADER.size:]), writer, None)
    except Exception as exc:  # noqa: BLE001 - display must show something whatever went wrong
        return {**fallback, "_error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(data, dict):
        return {**fallback, "_error": "Avro value is not a record"}
    return {"_schema_id": schema_id, **_json_ready(data)}
