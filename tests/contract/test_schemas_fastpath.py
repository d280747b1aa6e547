"""The generated fast loaders accept and reject exactly what the reference loaders do."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.fastpath import fast_loader
from schemas.serde import SchemaError, json_codec
from schemas.validation import compile_record
from tests.contract.test_schemas import ALL_TYPES, records_of

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, element in value.items():
            found += paths(element, prefix + (key,))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found += paths(element, prefix + (index,))
    return found


def outcome(load: Any, data: Any) -> Any:
    try:
        return ("ok", load(data))
    except SchemaError as exc:
        return ("error", exc.reason, exc.field)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_fast_and_reference_loaders_agree_on_mutated_payloads(cls: type, data: st.DataObject) -> None:
    plain = json_codec(cls).to_dict(data.draw(records_of(cls)))
    mutated = copy.deepcopy(plain)
    where = paths(mutated)
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if where:
        path = data.draw(st.sampled_from(where))
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        if action == "replace":
            parent[path[-1]] = data.draw(JSON_VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(JSON_VALUES)
    fast, reference = fast_loader(cls), compile_record(cls)[0]
    assert outcome(fast, copy.deepcopy(mutated)) == outcome(reference, copy.deepcopy(mutated))

