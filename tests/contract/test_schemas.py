"""Every ``.avsc`` agrees with its dataclass, and every record round-trips through every codec."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.topics import TOPICS
from schemas import records
from schemas.catalog import AVRO_DIR, BASELINE_DIR, RECORD_TYPES, schema_file_name
from schemas.rules import NON_EMPTY, NON_NEGATIVE, UNIT_INTERVAL, UNIT_INTERVAL_ITEMS
from schemas.serde import json_codec, registry_codec, schema_of

LONG = 2**63
ALL_TYPES = sorted(RECORD_TYPES.values(), key=lambda cls: cls.__name__)


# ------------------------------------------------------------------ the .avsc vs the dataclass


def expected_type(hint: Any) -> Any:
    """The Avro type a dataclass hint must have, every named type inlined, docs left out."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return ["null", expected_type(inner)]
    if origin is tuple:
        return {"type": "array", "items": expected_type(typing.get_args(hint)[0])}
    if origin is Mapping:
        assert typing.get_args(hint) == (str, str)
        return {"type": "map", "values": "string"}
    primitives = {str: "string", bool: "boolean", int: "long", float: "double", bytes: "bytes"}
    if hint in primitives:
        return primitives[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "enum", "name": hint.__name__, "symbols": [member.value for member in hint]}
    assert dataclasses.is_dataclass(hint), hint
    hints = typing.get_type_hints(hint)
    return {"type": "record", "name": hint.__name__, "fields": [
        {"name": f.name, "type": expected_type(hints[f.name])} for f in dataclasses.fields(hint)]}


def canonical(avro: Any, named: dict[str, Any]) -> Any:
    """An .avsc type with named references inlined and docs, namespaces and defaults dropped."""
    if isinstance(avro, str):
        return canonical(named[avro], named) if avro in named else avro
    if isinstance(avro, list):
        return [canonical(branch, named) for branch in avro]
    kind = avro["type"]
    if kind in ("record", "enum"):
        named.setdefault(avro["name"], avro)
    if kind == "record":
        return {"type": "record", "name": avro["name"], "fields": [
            {"name": f["name"], "type": canonical(f["type"], named)} for f in avro["fields"]]}
    if kind == "enum":
        return {"type": "enum", "name": avro["name"], "symbols": avro["symbols"]}
    if kind == "array":
        return {"type": "array", "items": canonical(avro["items"], named)}
    return {"type": "map", "values": canonical(avro["values"], named)}


def avro_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [avro_default(element) for element in value]
    if dataclasses.is_dataclass(value):
        return {f.name: avro_default(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return dict(value) if isinstance(value, Mapping) else value


def records_and_fields(avro: Any, cls: type) -> list[tuple[type, dict[str, Any], dict[str, Any]]]:
    """(dataclass, .avsc record, .avsc field) for every field of every record defined in ``avro``."""
    found = []
    hints = typing.get_type_hints(cls)
    for f, spec in zip(dataclasses.fields(cls), avro["fields"]):
        found.append((cls, avro, spec))
        inner, spec_type = hints[f.name], spec["type"]
        while True:
            origin = typing.get_origin(inner)
            if origin in (types.UnionType, typing.Union):
                inner = [arg for arg in typing.get_args(inner) if arg is not type(None)][0]
                spec_type = spec_type[1] if isinstance(spec_type, list) else spec_type
            elif origin is tuple:
                inner = typing.get_args(inner)[0]
                spec_type = spec_type["items"] if isinstance(spec_type, dict) else spec_type
            else:
                break
        if dataclasses.is_dataclass(inner) and isinstance(spec_type, dict):
            found += records_and_fields(spec_type, inner)
    return found


def test_every_topic_record_has_a_type_and_a_schema_file_and_nothing_else_does() -> None:
    assert {spec.record for spec in TOPICS} == set(RECORD_TYPES)
    files = {path.name for path in AVRO_DIR.glob("*.avsc")}
    assert files == {schema_file_name(cls) for cls in ALL_TYPES}
    assert {path.name for path in BASELINE_DIR.glob("*.avsc")} == files


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_avsc_matches_dataclass_field_by_field(cls: type) -> None:
    schema = schema_of(cls)
    assert (schema["name"], schema["namespace"]) == (cls.__name__, "dev.loopwise")
    assert canonical(schema, {}) == expected_type(cls)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_avsc_defaults_match_dataclass_defaults_and_everything_has_a_doc(cls: type) -> None:
    schema = schema_of(cls)
    for record_type, record, spec in records_and_fields(schema, cls):
        assert record["doc"].strip(), record["name"]
        assert spec["doc"].strip(), (record["name"], spec["name"])
        f = {f.name: f for f in dataclasses.fields(record_type)}[spec["name"]]
        if f.default is not dataclasses.MISSING:
            assert spec["default"] == avro_default(f.default), (record["name"], f.name)
        elif f.default_factory is not dataclasses.MISSING:
            assert spec["default"] == avro_default(f.default_factory()), (record["name"], f.name)
        else:
            assert "default" not in spec, (record["name"], f.name)


def test_every_rule_names_a_real_field_of_the_right_type() -> None:
    hints_by_name: dict[str, set[Any]] = {}
    for cls in ALL_TYPES:
        for record_type, _, spec in records_and_fields(schema_of(cls), cls):
            hint = typing.get_type_hints(record_type)[spec["name"]]
            inner = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
                types.UnionType, typing.Union) else [hint]
            hints_by_name.setdefault(spec["name"], set()).add(inner[0])
    # A rule applies by name and type: WorkflowDefinition.experiment is a record, not the id.
    assert all(str in hints_by_name[name] for name in NON_EMPTY)
    assert hints_by_name["experiment"] == {str, records.ExperimentSpec}
    assert all(hints_by_name[name] <= {int, float} for name in NON_NEGATIVE)
    assert all(hints_by_name[name] == {float} for name in UNIT_INTERVAL)
    assert all(hints_by_name[name] == {tuple[float, ...]} for name in UNIT_INTERVAL_ITEMS)


# -------------------------------------------------------------------------- round trips


def strategy_for(name: str, hint: Any) -> st.SearchStrategy[Any]:
    """Valid values of one field, from its hint and the rules on its name."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return st.none() | strategy_for(name, inner)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        items = st.floats(0.0, 1.0) if name in UNIT_INTERVAL_ITEMS else strategy_for(name + "[]", item)
        return st.lists(items, max_size=3).map(tuple)
    if origin is Mapping:
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
    if hint is str:
        return st.text(min_size=1 if name in NON_EMPTY else 0, max_size=12)
    if hint is int:
        return st.integers(0 if name in NON_NEGATIVE else -LONG, LONG - 1)
    if hint is float:
        if name in UNIT_INTERVAL:
            return st.floats(0.0, 1.0)
        return st.floats(min_value=0.0 if name in NON_NEGATIVE else None, allow_nan=False, allow_infinity=False)
    if hint is bool:
        return st.booleans()
    if hint is bytes:
        return st.binary(max_size=24)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    return records_of(hint)


def records_of(cls: type) -> st.SearchStrategy[Any]:
    """Valid records of a dataclass, every field drawn (defaults included)."""
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(f.name, hints[f.name]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_record_round_trips_through_json(cls: type, data: st.DataObject) -> None:
    record = data.draw(records_of(cls))
    codec = json_codec(cls)
    raw = codec.encode(record)
    assert codec.decode(raw) == record
    plain = codec.to_dict(record)
    assert orjson.loads(orjson.dumps(plain)) == orjson.loads(raw) == json.loads(raw)
    assert codec.from_dict(plain) == record


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=15)
@given(data=st.data())
def test_every_record_round_trips_through_the_registry_wire_format(cls: type, data: st.DataObject) -> None:
    record = data.draw(records_of(cls))
    codec = registry_codec(cls, topic=f"lw.contract.{cls.__name__}", registry_url="mock://contract")
    raw = codec.encode(record)
    assert raw[0] == 0
    assert codec.decode(raw) == record
    assert codec.from_dict(codec.to_dict(record)) == record
