"""Strict validation of decoded payloads: compiled per record type into fast load/dump converters.

Each record type is compiled once (``compile_record``) into two closures:
``load(dict) -> record`` checks every field (type, enum, range, unknown and
missing fields, nested records and arrays) and ``dump(record) -> dict`` gives a
plain dict. Per event no ``dataclasses.fields()`` or typing introspection runs:
every field is a precomputed ``(name, converter, default)`` tuple.

Errors::

    ValueError
     └── SchemaError(reason, detail, field)   reason is one of REASONS
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

from schemas.rules import FEEDBACK_VALUE_RANGES, NON_EMPTY, NON_NEGATIVE, UNIT_INTERVAL, UNIT_INTERVAL_ITEMS

REASONS: Final[tuple[str, ...]] = (
    "too_large", "empty", "malformed", "not_an_object", "missing_field", "unknown_field",
    "wrong_type", "bad_enum", "out_of_range", "not_finite", "bad_wire_format",
    # Decided at the input edge (streams/edge.py, streams/stages.py), not by decoding alone:
    "key_mismatch", "missing_key", "from_future", "duplicate", "too_late",
)
MAX_STRING_CHARS: Final = 64 * 1024
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1
_SHOW_CHARS = 80

Load = Callable[[Any], Any]
Dump = Callable[[Any], Any]


class SchemaError(ValueError):
    """Bad input: ``reason`` is a short code from ``REASONS``, ``field`` the path (``context.tenant``)."""

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(reason, detail, field)
        self.reason, self.detail, self.field = reason, detail, field

    def __str__(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"{self.reason}: {where}{self.detail}"

    def within(self, outer: str) -> SchemaError:
        """Prefix the field path with the enclosing field (``outer.field`` or ``outer[3]``)."""
        if self.field is None:
            self.field = outer
        else:
            self.field = outer + self.field if self.field.startswith("[") else f"{outer}.{self.field}"
        self.args = (self.reason, self.detail, self.field)
        return self


def show(value: Any) -> str:
    """A short, safe rendering of an offending value for error messages."""
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + f"... ({len(text)} chars)"


def _wrong(expected: str, value: Any) -> SchemaError:
    return SchemaError("wrong_type", f"expected {expected}, got {type(value).__name__} {show(value)}")


def _string(is_non_empty: bool) -> Load:
    def load(value: Any) -> str:
        if type(value) is not str:
            raise _wrong("a string", value)
        if len(value) > MAX_STRING_CHARS:
            raise SchemaError("out_of_range", f"string of {len(value)} chars exceeds {MAX_STRING_CHARS}")
        if is_non_empty and not value:
            raise SchemaError("out_of_range", "must not be empty")
        return value
    return load


def _long(low: int) -> Load:
    def load(value: Any) -> int:
        if type(value) is not int:  # excludes bool, a subclass of int
            raise _wrong("an integer", value)
        if value < low or value > LONG_MAX:
            raise SchemaError("out_of_range", f"{show(value)} outside [{low}, {LONG_MAX}]")
        return value
    return load


def _double(low: float, high: float) -> Load:
    isfinite = math.isfinite

    def load(value: Any) -> float:
        kind = type(value)
        if kind is int:  # JSON writes 1.0 as 1; Avro promotes long to double too
            value = float(value)
        elif kind is not float:
            raise _wrong("a number", value)
        if not isfinite(value):
            raise SchemaError("not_finite", f"{show(value)} is not a finite number")
        if value < low or value > high:
            raise SchemaError("out_of_range", f"{show(value)} outside [{low}, {high}]")
        return float(value)
    return load


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _wrong("a boolean", value)
    return value


def _bytes_b64(value: Any) -> bytes:
    if type(value) is not str:
        raise _wrong("a base64 string", value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError("wrong_type", f"invalid base64 {show(value)}: {exc}") from None


def _bytes_raw(value: Any) -> bytes:
    if type(value) is not bytes:
        raise _wrong("bytes", value)
    return value


def _enum(enum_type: type[enum.Enum]) -> Load:
    table = dict(enum_type._value2member_map_)
    symbols = ", ".join(str(member.value) for member in enum_type)

    def load(value: Any) -> Any:
        if type(value) is str:
            member = table.get(value)
        else:
            member = value if isinstance(value, enum_type) else None
        if member is None:
            if not isinstance(value, str):
                raise _wrong(f"one of {symbols}", value)
            raise SchemaError("bad_enum", f"{show(value)} is not one of {symbols}")
        return member
    return load


def _optional(inner: Load) -> Load:
    def load(value: Any) -> Any:
        return None if value is None else inner(value)
    return load


def _array(item: Load) -> Load:
    def load(value: Any) -> tuple[Any, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong("an array", value)
        out = []
        index = 0
        try:
            for index, element in enumerate(value):
                out.append(item(element))
        except SchemaError as exc:
            raise exc.within(f"[{index}]") from None
        return tuple(out)
    return load


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _wrong("an object of strings", value)
    for key, element in value.items():
        if type(key) is not str or type(element) is not str:
            bad = element if type(key) is str else key
            raise _wrong("a string", bad).within(str(key))
        if len(element) > MAX_STRING_CHARS or len(key) > MAX_STRING_CHARS:
            raise SchemaError("out_of_range", f"string over {MAX_STRING_CHARS} chars", str(key)[:_SHOW_CHARS])
    return value if type(value) is dict else dict(value)


def field_loader(name: str, hint: Any, is_b64: bool) -> Load:
    """The reference converter of one field, from its name (for ``rules``) and type hint."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _optional(field_loader(name, inner, is_b64))
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if name in UNIT_INTERVAL_ITEMS:
            return _array(_double(0.0, 1.0))
        return _array(field_loader(name, item_hint, is_b64))
    if origin is Mapping or origin is dict:
        return _string_map
    if hint is str:
        return _string(name in NON_EMPTY)
    if hint is bool:
        return _boolean
    if hint is int:
        return _long(0 if name in NON_NEGATIVE else LONG_MIN)
    if hint is float:
        if name in UNIT_INTERVAL:
            return _double(0.0, 1.0)
        return _double(0.0 if name in NON_NEGATIVE else -math.inf, math.inf)
    if hint is bytes:
        return _bytes_b64 if is_b64 else _bytes_raw
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return compile_record(hint, is_b64=is_b64)[0]
    raise TypeError(f"no converter for field {name!r} of type {hint!r}")


def _field_dumper(hint: Any, is_b64: bool) -> Dump | None:
    """A converter to a plain value, or None where the value is already plain (str, numbers, enums)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        dump = _field_dumper(inner, is_b64)
        return None if dump is None else (lambda value: None if value is None else dump(value))
    if origin is tuple:
        item = _field_dumper(typing.get_args(hint)[0], is_b64)
        return list if item is None else (lambda value: [item(element) for element in value])
    if origin is Mapping or origin is dict:
        return dict
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: value.value
    if hint is bytes:
        return (lambda value: base64.b64encode(value).decode("ascii")) if is_b64 else None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return compile_record(hint, is_b64=is_b64)[1]
    return None


_COMPILED: dict[tuple[type, bool], tuple[Load, Dump]] = {}


def compile_record(record_type: type, *, is_b64: bool = True) -> tuple[Load, Dump]:
    """The ``(load, dump)`` pair of a record type, built once and cached.

    Args:
        record_type: A frozen dataclass from ``schemas.records``.
        is_b64: Bytes travel as base64 strings (JSON) rather than raw bytes (Avro).

    Returns:
        ``load(dict) -> record`` raising ``SchemaError`` on any bad field (a
        non-dict raises ``wrong_type`` with no field: callers at the top level
        report ``not_an_object``), and ``dump(record) -> dict``.
    """
    cached = _COMPILED.get((record_type, is_b64))
    if cached is not None:
        return cached
    hints = typing.get_type_hints(record_type)
    fields = dataclasses.fields(record_type)
    specs: tuple[tuple[str, Load, Any, Any], ...] = tuple(
        (f.name, field_loader(f.name, hints[f.name], is_b64), f.default, f.default_factory)
        for f in fields
    )
    dumps = tuple((f.name, _field_dumper(hints[f.name], is_b64)) for f in fields)
    names = frozenset(f.name for f in fields)
    missing = dataclasses.MISSING

    def load(data: Any) -> Any:
        if type(data) is not dict:
            raise _wrong("an object", data)
        if not names.issuperset(data):
            unknown = sorted(str(key) for key in data if key not in names)
            raise SchemaError("unknown_field", f"not in {record_type.__name__}", unknown[0])
        args = []
        name = ""
        try:
            for name, convert, default, factory in specs:
                value = data.get(name, missing)
                if value is not missing:
                    args.append(convert(value))
                elif default is not missing:
                    args.append(default)
                elif factory is not missing:
                    args.append(factory())
                else:
                    raise SchemaError("missing_field", f"required by {record_type.__name__}")
        except SchemaError as exc:
            raise exc.within(name) from None
        return record_type(*args)

    def dump(record: Any) -> dict[str, Any]:
        out = {}
        for name, convert in dumps:
            value = getattr(record, name)
            out[name] = value if convert is None else convert(value)
        return out

    _COMPILED[(record_type, is_b64)] = (load, dump)
    return load, dump


def _check_feedback_value(record: Any) -> None:
    kind = str(getattr(record.kind, "value", record.kind))
    bounds = FEEDBACK_VALUE_RANGES.get(kind)
    if bounds is not None and not bounds[0] <= record.value <= bounds[1]:
        raise SchemaError("out_of_range", f"{show(record.value)} outside [{bounds[0]:g}, {bounds[1]:g}] "
                          f"for kind {kind}", "value")


#: Rules across fields that a field's own converter cannot check, by record type name.
_RECORD_RULES: Final[dict[str, Callable[[Any], None]]] = {"FeedbackEvent": _check_feedback_value}


def record_rule(record_type: type) -> Callable[[Any], None] | None:
    """The cross-field check of a record type (raises ``SchemaError``), or None if it has none.

    >>> from schemas.records import FeedbackEvent, FeedbackKind
    >>> record_rule(FeedbackEvent)(FeedbackEvent("f", "r", 0, FeedbackKind.RATING, 0.9))
    Traceback (most recent call last):
    ...
    schemas.validation.SchemaError: out_of_range: field 'value': 0.9 outside [1, 5] for kind rating
    """
    return _RECORD_RULES.get(record_type.__name__)
