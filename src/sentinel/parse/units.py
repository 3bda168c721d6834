"""The pydantic building blocks of every section model: the one strict base, durations and sizes
as validated types, and pydantic errors as one-line messages."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from sentinel.config_units import parse_duration, parse_size
from sentinel.sanitize import mark_controls


class StrictSection(BaseModel):
    """The base of every config section model. Unknown keys are errors (a typo must never
    silently disable a check); values are strict (`true`, not "yes"; 3, not "3"); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


Duration = Annotated[float, BeforeValidator(parse_duration)]


Size = Annotated[int, BeforeValidator(parse_size)]


def _format_loc(loc: tuple[int | str, ...], *, top_level: bool) -> str:
    """('email', 'to', 0) -> 'email: to[0]'; inside a site ('interval',) -> 'interval'."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    if top_level and len(parts) > 1:
        return f"{parts[0]}: {_format_loc(tuple(parts[1:]), top_level=False)}"
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def pydantic_errors(exc: ValidationError, prefix: str) -> list[str]:
    """One line per error, `prefix: field: message` (`sites[2] "blog": interval: ...`); with no
    prefix the first part of the location is the section (`email: to[0]: ...`)."""
    lines = []
    for err in exc.errors():
        loc = _format_loc(err["loc"], top_level=not prefix)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "required"
        loc = mark_controls(loc)  # a quoted TOML key may hold a newline
        where = f"{prefix}: {loc}" if prefix and loc else (prefix or loc)
        lines.append(f"{where}: {msg}" if where else msg)
    return lines
