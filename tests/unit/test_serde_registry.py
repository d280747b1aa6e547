"""Confluent Schema Registry codec (mock:// registry): round trip, evolution, bad frames, display."""

from __future__ import annotations

import json
import struct

import orjson
import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import RequestEvent, Status
from schemas.registry import registry_client
from schemas.serde import REASONS, JsonCodec, SchemaError, decode_for_display, make_codec, schema_of
from tests.factories import make_request

URL = "mock://unit-serde"
TOPIC = "lw.unit.requests"
CODEC = make_codec(RequestEvent, topic=TOPIC, registry_url=URL, max_event_bytes=4096)


def reason_and_field(raw: bytes) -> tuple[str, str | None]:
    with pytest.raises(SchemaError) as caught:
        CODEC.decode(raw)
    return caught.value.reason, caught.value.field


def test_round_trip_is_framed_avro_registered_under_topic_value() -> None:
    raw = CODEC.encode(make_request(variant="v2", error_type=None))
    assert raw[0] == 0
    schema_id = struct.unpack(">I", raw[1:5])[0]
    assert registry_client(URL).get_latest_version(f"{TOPIC}-value").schema_id == schema_id
    decoded = CODEC.decode(raw)
    assert decoded == make_request(variant="v2") and type(decoded.status) is Status


def test_data_written_with_an_older_schema_is_read_with_defaults() -> None:
    old = schema_of(RequestEvent)
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("variant", "error_message")]
    writer = AvroSerializer(registry_client(URL), json.dumps(old), conf={"auto.register.schemas": True})
    record = {k: v for k, v in CODEC.to_dict(make_request(variant="v2")).items() if k not in ("variant", "error_message")}
    raw = writer(record, SerializationContext("lw.unit.old", MessageField.VALUE))
    assert CODEC.decode(raw) == make_request()


def test_bad_frames_have_their_reasons() -> None:
    assert reason_and_field(b'{"request_id": "r1"}') == ("bad_wire_format", None)
    assert reason_and_field(b"\x00\x00\x00") == ("bad_wire_format", None)
    assert reason_and_field(b"\x00\x00\x0f\x42\x40abc") == ("bad_wire_format", None)  # schema id 1,000,000
    good = CODEC.encode(make_request())
    assert reason_and_field(good[:12]) == ("malformed", None)
    assert reason_and_field(b"") == ("empty", None)
    assert reason_and_field(good + b"x" * 4096) == ("too_large", None)


def test_avro_values_are_validated_like_json() -> None:
    raw = CODEC.encode(make_request(latency_ms=-3.0))  # encode trusts typed code; decode does not
    assert reason_and_field(raw) == ("out_of_range", "latency_ms")


@given(st.binary(max_size=200))
def test_random_bytes_after_a_valid_header_decode_or_raise_schema_error(tail: bytes) -> None:
    header = CODEC.encode(make_request())[:5]
    try:
        assert type(CODEC.decode(header + tail)) is RequestEvent
    except SchemaError as exc:
        assert exc.reason in REASONS


def test_make_codec_without_registry_is_json() -> None:
    codec = make_codec(RequestEvent, topic=TOPIC, registry_url=None, max_event_bytes=4096)
    assert isinstance(codec, JsonCodec)
    assert codec.encode(make_request()).startswith(b'{"request_id":"r1",')


def test_decode_for_display_reads_every_wire_format() -> None:
    json_raw = make_codec(RequestEvent, topic=TOPIC, registry_url=None).encode(make_request())
    avro_raw = CODEC.encode(make_request())
    assert decode_for_display(json_raw, RequestEvent)["request_id"] == "r1"
    shown = decode_for_display(avro_raw, None, URL)
    assert (shown["request_id"], shown["status"], shown["context"]["tenant"]) == ("r1", "ok", "acme")
    assert shown["_schema_id"] == struct.unpack(">I", avro_raw[1:5])[0]
    assert decode_for_display(avro_raw, RequestEvent)["_error"] == (
        "Confluent-framed Avro, but no schema registry URL is configured")
    assert decode_for_display(b"\xff\x01", None) == {"_raw_b64": "/wE=", "_error": "not JSON: " + str(
        _orjson_error(b"\xff\x01"))}
    invalid = decode_for_display(b'{"request_id": ""}', RequestEvent)
    assert invalid == {"request_id": "", "_error": "out_of_range: field 'request_id': must not be empty"}


def _orjson_error(raw: bytes) -> Exception:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return exc
    raise AssertionError("expected an error")
