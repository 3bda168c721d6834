"""The early warnings' part of the status page: one row per watch and disk with its state, so a
watch that cannot be read says so ("UNREADABLE: no process matches /x/") instead of looking
healthy. Pure: `EarlyWarnings.status_view()` in, HTML out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sentinel.sanitize import escape_html

EarlyView = Mapping[str, Sequence[Mapping[str, Any]]]

_MIB = 1024 * 1024


def _mib(value: object) -> str:
    return f"{value / _MIB:.1f} MiB" if isinstance(value, int | float) else ""


def _detail(row: Mapping[str, Any]) -> str:
    if row.get("state") == "unreadable":
        return str(row.get("error") or "")
    if "watch" in row:
        return _mib(row.get("memory_bytes"))
    used, size = row.get("used_bytes"), row.get("size_bytes")
    return f"{_mib(used)} of {_mib(size)}" if used is not None and size else ""


def render_early_section(view: EarlyView) -> str:
    """A table of the watches and disks; "" when there are none."""
    rows = []
    for row in [*view.get("watches", ()), *view.get("disks", ())]:
        name = row.get("watch") if "watch" in row else row.get("mount")
        state = str(row.get("state", "unknown"))
        cells = (escape_html(str(name)), escape_html(state.upper()), escape_html(_detail(row)))
        rows.append(
            f"<tr class='{escape_html(state)}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>early warnings</h2><table><tr><th>watch</th><th>state</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )
