"""Dataclasses <-> the JSON text the store keeps (site states, heartbeat states, warnings, trends).

The format: compact separators, ASCII, enums by value, tuples as lists, NaN and Infinity as
JSON's extended constants. Reading is strict (no "3" for 3, no 1 for true, no 3.0 for 3) and
tolerant of other versions: a missing field takes its default (an older version did not write
it), an unknown one (a newer version's) is ignored.

Hand-written on purpose, not pydantic's `TypeAdapter` (which did this job for a while): the
daemon keeps no pydantic at run time, it costs ~20 MiB resident (bench/README.md, round 7). Each
saved class is turned once into a plan of field readers (`_plan`), so a row is read without
looking at type hints again. tests/test_store_codec.py holds it to the first hand-written codec
(the reference the stored rows were written by), text for text.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from sentinel.monitor import SiteState

T = TypeVar("T")

# A reader: decoded JSON and where it is (for the message) -> the field's value, or ValueError.
Reader = Callable[[object, str], object]
# A class's plan: (field name, reader) for every field. One per saved class (a handful).
_PLANS: dict[type[Any], tuple[tuple[str, Reader], ...]] = {}
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


# ---------------------------------------------------------------- writing


def _to_json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is None and dataclasses.is_dataclass(value):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _to_json_value(getattr(value, name)) for name in names}
    return value


def encode_dataclass(value: object) -> str:
    """A dataclass -> JSON text."""
    return json.dumps(_to_json_value(value), separators=(",", ":"), allow_nan=True)


def encode_state(state: SiteState) -> str:
    """SiteState -> JSON text (Status by value, recent results as a list of objects)."""
    return encode_dataclass(state)


# ---------------------------------------------------------------- reading


def _plan(cls: type[Any]) -> tuple[tuple[str, Reader], ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = _PLANS[cls] = tuple(
            (f.name, _reader(hints[f.name])) for f in dataclasses.fields(cls)
        )
    return plan


def _build(cls: type[Any], data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    kwargs = {
        name: read(data[name], f"{where}.{name}") for name, read in _plan(cls) if name in data
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field missing
        raise ValueError(f"{where}: {exc}") from None


def _reader(hint: Any) -> Reader:
    """The reader of one type hint: the few types saved classes use."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _union_reader(typing.get_args(hint))
    if origin is typing.Literal:
        allowed = typing.get_args(hint)

        def read_literal(value: object, where: str) -> object:
            if isinstance(value, str | int) and not isinstance(value, bool) and value in allowed:
                return value
            raise ValueError(f"{where}: unknown value {value!r}")

        return read_literal
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported field type {hint!r}")
        item = _reader(args[0])

        def read_tuple(value: object, where: str) -> object:
            if not isinstance(value, list):
                raise ValueError(f"{where}: expected a list")
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

        return read_tuple
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_cls = hint

        def read_enum(value: object, where: str) -> object:
            try:
                return enum_cls(value)
            except ValueError:
                raise ValueError(f"{where}: unknown value {value!r}") from None

        return read_enum
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls = hint
        return lambda value, where: _build(cls, value, where)
    scalar = _SCALARS.get(hint)
    if scalar is None:
        raise TypeError(f"unsupported field type {hint!r}")
    return scalar


def _union_reader(args: tuple[Any, ...]) -> Reader:
    optional = type(None) in args
    readers = [_reader(arg) for arg in args if arg is not type(None)]

    def read_union(value: object, where: str) -> object:
        if value is None and optional:
            return None
        errors = []
        for read in readers:
            try:
                return read(value, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{where}: unexpected null")

    return read_union


def _scalar(check: Callable[[object], bool], convert: Callable[[Any], object], name: str) -> Reader:
    def read(value: object, where: str) -> object:
        if check(value):
            return convert(value)
        raise ValueError(f"{where}: expected {name}, got {type(value).__name__}")

    return read


_SCALARS: dict[Any, Reader] = {
    bool: _scalar(lambda v: isinstance(v, bool), bool, "bool"),
    int: _scalar(lambda v: isinstance(v, int) and not isinstance(v, bool), int, "int"),
    float: _scalar(
        lambda v: isinstance(v, int | float) and not isinstance(v, bool), float, "float"
    ),
    str: _scalar(lambda v: isinstance(v, str), str, "str"),
}


def _json_object(text: str | bytes) -> dict[str, object]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def decode_dataclass(cls: type[T], text: str | bytes) -> T:
    """JSON text from `encode_dataclass` -> `cls`; raises ValueError for anything else."""
    value = _build(cls, _json_object(text), cls.__name__)
    assert isinstance(value, cls)
    return value


def decode_state(site: str, text: str | bytes) -> SiteState:
    """JSON text -> SiteState; raises ValueError for anything that is not a valid state.
    The row's key is the truth about the site's name (a row may even lack it)."""
    data = _json_object(text)
    data["site"] = site
    state = _build(SiteState, data, "SiteState")
    assert isinstance(state, SiteState)
    return state
