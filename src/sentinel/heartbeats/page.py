"""The heartbeats' part of the status page: one row per heartbeat, from `HeartbeatService.status`.
Pure; every value is HTML-escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sentinel.sanitize import escape_html


def render_heartbeats_section(beats: Sequence[Mapping[str, Any]]) -> str:
    """The status page's heartbeat table (empty without heartbeats)."""
    if not beats:
        return ""
    rows = []
    for b in beats:
        status = str(b.get("status", "new"))
        cls = "down" if status in ("late", "failed") else "up"
        rows.append(
            "<tr class='{cls}'><td>{name}</td><td>{status}</td><td>{last}</td>"
            "<td>{expected}</td><td>{exit}</td></tr>".format(
                cls=cls,
                name=escape_html(str(b.get("heartbeat"))),
                status=escape_html(status.upper() + _muted_note(b)),
                last=escape_html(str(b.get("last_ping") or "never")),
                expected=escape_html(str(b.get("expected_at") or "")),
                exit="" if b.get("last_exit") is None else escape_html(str(b.get("last_exit"))),
            )
        )
    return (
        "<h2>heartbeats</h2><table><tr><th>heartbeat</th><th>status</th><th>last ping</th>"
        "<th>next ping expected</th><th>last exit</th></tr>" + "".join(rows) + "</table>"
    )


def _muted_note(beat: Mapping[str, Any]) -> str:
    """A note after the status while a window or silence covers the heartbeat ("(silenced)"),
    saying its alert is held when an incident opened meanwhile (README "Quiet alarms")."""
    why = (
        "in maintenance" if beat.get("maintenance") else "silenced" if beat.get("silenced") else ""
    )
    if beat.get("alert_held"):
        return f" (alert held{': ' + why if why else ''})"
    return f" ({why})" if why else ""
