"""Generated fast loaders: one straight-line function per record type for well-formed input.

``validation.compile_record`` gives the reference loader: a loop over
per-field closures, exact about what is wrong and where. It costs one Python
call per field, about half the budget of a stream processor's event. For the
common case, valid input, this module generates (once per record type, like
``dataclasses`` does for ``__init__``) a function that checks each field inline
and builds the record. At the first doubt it hands the whole payload to the
reference loader, which either raises the precise ``SchemaError`` or returns
the record, so both paths accept exactly the same payloads (a hypothesis test
holds them to it).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from schemas.rules import NON_EMPTY, NON_NEGATIVE, UNIT_INTERVAL, UNIT_INTERVAL_ITEMS
from schemas.validation import LONG_MAX, LONG_MIN, MAX_STRING_CHARS, Load, SchemaError, compile_record, field_loader

_FLOAT_MAX = sys.float_info.max  # bounds at +-max also reject inf; NaN fails every comparison
_FAST: dict[tuple[type, bool], Load] = {}


class _Reject(Exception):
    """Raised inside a generated loader to hand the payload to the reference loader."""


def _split_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return inner, True
    return hint, False


def _guard(name: str, hint: Any, var: str) -> str | None:
    """An inline boolean expression true when ``var`` is valid as-is, or None if it needs a call."""
    if hint is str:
        return f"type({var}) is str and len({var}) <= {MAX_STRING_CHARS}" + (f" and {var} != ''" if name in NON_EMPTY else "")
    if hint is bool:
        return f"type({var}) is bool"
    if hint is int:
        return f"type({var}) is int and {0 if name in NON_NEGATIVE else LONG_MIN} <= {var} <= {LONG_MAX}"
    if hint is float:
        low = 0.0 if name in NON_NEGATIVE or name in UNIT_INTERVAL else -_FLOAT_MAX
        high = 1.0 if name in UNIT_INTERVAL else _FLOAT_MAX
        return f"type({var}) is float and {low!r} <= {var} <= {high!r}"
    return None


def _converter(name: str, hint: Any, is_b64: bool, env: dict[str, Any], var: str) -> list[str]:
    """Statements that turn ``var`` into its field value, raising SchemaError when it is bad."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        env[f"T_{var}"] = dict(hint._value2member_map_)
        return [f"{var} = T_{var}.get({var}) if type({var}) is str else None",
                f"if {var} is None: raise BAD"]
    if dataclasses.is_dataclass(hint):
        env[f"F_{var}"] = fast_loader(hint, is_b64=is_b64)  # type: ignore[arg-type]
        return [f"{var} = F_{var}({var})"]
    if origin is tuple and typing.get_args(hint)[0] is str and name not in UNIT_INTERVAL_ITEMS:
        cap = MAX_STRING_CHARS
        return [f"if type({var}) is not list: raise BAD",
                f"for e in {var}:",
                f"    if type(e) is not str or len(e) > {cap}: raise BAD",
                f"{var} = tuple({var})"]
    if origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        env[f"F_{var}"] = fast_loader(typing.get_args(hint)[0], is_b64=is_b64)
        return [f"if type({var}) is not list: raise BAD", f"{var} = tuple([F_{var}(e) for e in {var}])"]
    if origin is Mapping or origin is dict:
        return [f"if type({var}) is not dict: raise BAD",
                f"for k, e in {var}.items():",
                f"    if type(e) is not str or len(e) > {MAX_STRING_CHARS} or len(k) > {MAX_STRING_CHARS}: raise BAD"]
    guard = _guard(name, hint, var)
    if guard is not None:
        return [f"if not ({guard}): raise BAD"]
    env[f"L_{var}"] = field_loader(name, hint, is_b64)  # the reference converter: bytes, float arrays
    return [f"{var} = L_{var}({var})"]


def _field_source(index: int, field: dataclasses.Field[Any], hint: Any, is_b64: bool, env: dict[str, Any]) -> list[str]:
    var = f"v{index}"
    inner, is_optional = _split_optional(hint)
    body = _converter(field.name, inner, is_b64, env, var)
    lines = [f"{var} = get({field.name!r}, M)"]
    if field.default is not dataclasses.MISSING:
        env[f"D_{var}"] = field.default
        lines += [f"if {var} is M:", f"    {var} = D_{var}"]
    elif field.default_factory is not dataclasses.MISSING:
        env[f"D_{var}"] = field.default_factory
        lines += [f"if {var} is M:", f"    {var} = D_{var}()"]
    else:
        lines += [f"if {var} is M: raise BAD"]
    check = f"{var} is not None" if is_optional else "True"
    lines += [f"elif {check}:"] + [f"    {line}" for line in body]
    return lines


def fast_loader(record_type: type, *, is_b64: bool = True) -> Load:
    """The generated loader of a record type, cached; same contract as ``compile_record``'s load."""
    cached = _FAST.get((record_type, is_b64))
    if cached is not None:
        return cached
    slow = compile_record(record_type, is_b64=is_b64)[0]
    fields = dataclasses.fields(record_type)
    hints = typing.get_type_hints(record_type)
    env: dict[str, Any] = {"M": dataclasses.MISSING, "BAD": _Reject,
                           "SchemaError": SchemaError, "Reject": _Reject, "slow": slow, "C": record_type,
                           "NAMES": frozenset(f.name for f in fields)}
    lines = ["def load(data):",
             "    if type(data) is not dict or not NAMES.issuperset(data): return slow(data)",
             "    get = data.get",
             "    try:"]
    for index, field in enumerate(fields):
        lines += [f"        {line}" for line in _field_source(index, field, hints[field.name], is_b64, env)]
    lines += ["    except (SchemaError, Reject):",
              "        return slow(data)",  # the reference loader says what and where
              "    return C(" + ", ".join(f"v{index}" for index in range(len(fields))) + ")"]
    exec(compile("\n".join(lines), f"<fast loader of {record_type.__name__}>", "exec"), env)  # noqa: S102
    loader: Load = env["load"]
    _FAST[(record_type, is_b64)] = loader
    return loader
