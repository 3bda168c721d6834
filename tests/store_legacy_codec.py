"""The hand-written JSON codec the store used before pydantic's TypeAdapter, kept verbatim as
the reference: rows it wrote must decode identically (tests/test_store_codec.py)."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any, TypeVar

from sentinel.monitor import SiteState

T = TypeVar("T")


def _to_json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    return value


def encode_state(state: SiteState) -> str:
    """SiteState -> JSON text (Status by value, recent results as a list of objects)."""
    return encode_dataclass(state)


def _from_json_value(value: object, hint: Any, where: str) -> object:
    """Convert decoded JSON to `hint` (the few types SiteState uses), or raise ValueError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_json_value(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{where}: unexpected null")
    if origin is typing.Literal:
        if value in typing.get_args(hint) and isinstance(value, str | int):
            return value
        raise ValueError(f"{where}: unknown value {value!r}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list) or len(args) != 2 or args[1] is not Ellipsis:
            raise ValueError(f"{where}: expected a list")
        return tuple(_from_json_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{where}: unknown value {value!r}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        return _build_dataclass(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise ValueError(f"{where}: unsupported field type {hint!r}")
    raise ValueError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")


def _build_dataclass(cls: type[Any], data: dict[str, object], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:  # missing: the field's default (an older version did not write it)
            kwargs[f.name] = _from_json_value(data[f.name], hints[f.name], f"{where}.{f.name}")
    try:
        return cls(**kwargs)  # unknown keys (a newer version's fields) are ignored
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def encode_dataclass(value: object) -> str:
    """A dataclass of the types SiteState uses (plus Literal) -> JSON text."""
    return json.dumps(_to_json_value(value), separators=(",", ":"), allow_nan=True)


def _json_object(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def decode_dataclass(cls: type[T], text: str) -> T:
    """JSON text from `encode_dataclass` -> `cls`; raises ValueError for anything else."""
    value = _build_dataclass(cls, _json_object(text), cls.__name__)
    assert isinstance(value, cls)
    return value


def decode_state(site: str, text: str) -> SiteState:
    """JSON text -> SiteState; raises ValueError for anything that is not a valid state."""
    data = _json_object(text)
    data["site"] = site  # the row's key is the truth
    state = _build_dataclass(SiteState, data, "state")
    assert isinstance(state, SiteState)
    return state
