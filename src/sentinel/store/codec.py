"""Dataclasses <-> the JSON text the store keeps (site states, heartbeat states, warnings, trends).

pydantic's `TypeAdapter` does the work; the format is the one the hand-written codec before it
wrote, byte for byte: compact separators, ASCII, enums by value, tuples as lists, NaN and
Infinity as JSON's extended constants. Reading is strict (no "3" for 3, no 1 for true) and
tolerant of other versions: a missing field takes its default (an older version did not write
it), an unknown one (a newer version's) is ignored.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from sentinel.monitor import SiteState

T = TypeVar("T")


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """One adapter a class, built at first use (building one takes milliseconds)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def encode_dataclass(value: object) -> str:
    """A dataclass -> JSON text."""
    data = _adapter(type(value)).dump_python(value, mode="json")
    # json.dumps, not dump_json: pydantic would write NaN and Infinity as null.
    return json.dumps(data, separators=(",", ":"), allow_nan=True)


def decode_dataclass(cls: type[T], text: str | bytes) -> T:
    """JSON text from `encode_dataclass` -> `cls`; raises ValueError for anything else."""
    try:
        value = _adapter(cls).validate_json(text, strict=True)
    except ValidationError as exc:
        raise ValueError(_one_line(exc)) from None
    assert isinstance(value, cls)
    return value


def encode_state(state: SiteState) -> str:
    """SiteState -> JSON text (Status by value, recent results as a list of objects)."""
    return encode_dataclass(state)


def decode_state(site: str, text: str | bytes) -> SiteState:
    """JSON text -> SiteState; raises ValueError for anything that is not a valid state.
    The row's key is the truth about the site's name (a row may even lack it)."""
    try:
        state = decode_dataclass(SiteState, text)
    except ValueError:
        # Slow path, rare: put the key in and try again (a real error is raised again).
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SiteState: not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("site") == site:
            raise
        data["site"] = site
        return decode_dataclass(SiteState, json.dumps(data, allow_nan=True))
    return state if state.site == site else dataclasses.replace(state, site=site)


def _one_line(exc: ValidationError) -> str:
    """pydantic's first error as "where: what" (the caller logs it on one line)."""
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(part) for part in (exc.title, *first["loc"]))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
