"""What the daemon shows about its sites: the /status JSON, the status page's notes and sections,
and the log line of an early warning.

Read-only views over a running `Daemon` (its sites, states, maintenance, silences, alerts); they
never change it. The daemon keeps thin methods that delegate here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sentinel.config import SiteConfig
from sentinel.early.page import render_early_section
from sentinel.heartbeats.page import render_heartbeats_section
from sentinel.history.query import HistoryReader
from sentinel.history.settings import StatusPageConfig
from sentinel.monitor import SiteState
from sentinel.silences import active_for
from sentinel.web import dead_letter_banner, iso_utc
from sentinel.webviews.pages import StatusPages
from sentinel.webviews.status_page import PageContext

if TYPE_CHECKING:
    from sentinel.daemon import Daemon


def site_status(daemon: Daemon) -> list[dict[str, Any]]:
    """One JSON-ready view per site (GET /status): state, maintenance windows and silences."""
    return list(site_views(daemon))


def site_views(daemon: Daemon, batch: int = 100) -> Iterator[dict[str, Any]]:
    """`site_status`, made `batch` sites at a time as it is consumed (/api/status writes each
    batch with the event loop free in between). The site list is the one at the start; a site
    removed meanwhile (a reload) is left out."""
    names = list(daemon.states)
    for start in range(0, len(names), batch):
        now = time.time()
        views = []
        for name in names[start : start + batch]:
            state = daemon.states.get(name)
            if state is None:
                continue
            view = status_dict(daemon.sites.get(name), state)
            view["maintenance"] = [w.name for w in daemon.maintenance.active_for(name, now)]
            view["silenced"] = [
                {"id": x.id, "until": iso_utc(x.until), "reason": x.reason}
                for x in active_for(daemon.silences, name, now)
            ]
            views.append(view)
        if daemon.pages is not None:
            daemon.pages.annotate(views)
        yield from views


def heartbeat_status(daemon: Daemon) -> list[dict[str, Any]]:
    """The heartbeats in /api/status, with the maintenance windows and silences covering them
    (the same fields as a site's)."""
    now = time.time()
    views = daemon.heartbeats.status()
    for view in views:
        name = str(view["heartbeat"])
        view["maintenance"] = [w.name for w in daemon.maintenance.active_for(name, now)]
        view["silenced"] = [
            {"id": x.id, "until": iso_utc(x.until), "reason": x.reason}
            for x in active_for(daemon.silences, name, now)
        ]
    return views


def extra_status(daemon: Daemon) -> dict[str, Any]:
    """/api/status's other fields: "network" (sentinel.canary) and, with `[sentinel] shard`,
    "shard": "k/n" (this sentinel's part of the site list)."""
    extra: dict[str, Any] = {"network": daemon.canaries.view()}
    if daemon.config.shard is not None:
        extra["shard"] = str(daemon.config.shard)
    return extra


def status_pages(daemon: Daemon) -> StatusPages:
    """The HTML status pages, reading the daemon's live config and states on every request."""
    history = daemon.history
    return StatusPages(
        sites=lambda: daemon.sites,
        states=lambda: daemon.states,
        settings=lambda: daemon.config.status_page or StatusPageConfig(),
        recorder=history,
        reader=None if history is None else HistoryReader(history.store, history),
        notes=lambda name: site_notes(daemon, name),
        extra_sections=lambda: page_sections(daemon),
    )


def site_notes(daemon: Daemon, name: str) -> tuple[str, ...]:
    """What the status page says under a site's state besides up/down (issue 15's states)."""
    notes: list[str] = []
    state = daemon.states.get(name)
    now = time.time()
    if state is not None and state.state_name == "pending":
        notes.append(f"Pending: {state.consecutive_failures} failed, being confirmed")
    if state is not None and state.flapping:
        notes.append("Flapping: alerts held until it is stable")
    if daemon.canaries.holding:
        notes.append("Alerts held: sentinel's own network is down (every canary fails)")
    notes += [f"In maintenance: {w.name}" for w in daemon.maintenance.active_for(name, now)]
    notes += [
        f"Silenced until {iso_utc(x.until)}" + (f": {x.reason}" if x.reason else "")
        for x in active_for(daemon.silences, name, now)
    ]
    return tuple(notes)


def page_sections(daemon: Daemon) -> list[Callable[[PageContext], str]]:
    """Sections above the sites: the network down, undelivered alerts, early warnings,
    heartbeats."""
    dead = daemon.dispatch.dead_letters
    early = daemon.early.status_view() if daemon.early is not None else None
    beats = heartbeat_status(daemon)  # with the windows and silences covering each
    network = daemon.canaries.banner()
    return [
        lambda ctx: network,
        lambda ctx: dead_letter_banner(dead),
        lambda ctx: render_early_section(early) if early else "",
        lambda ctx: render_heartbeats_section(beats) if beats else "",
    ]


def decode_summary(alert_json: str) -> str:
    """The "[sentinel] ..." line of a stored alert, for the log."""
    from sentinel.notify.payload import decode_alert

    try:
        return "[sentinel] " + decode_alert(alert_json).summary
    except ValueError:
        return "?"


def status_dict(site: SiteConfig | None, state: SiteState) -> dict[str, Any]:
    """A site's state as JSON-ready values (GET /status and `sentinel status`)."""
    last = state.last
    return {
        "site": state.site,
        "target": site.target if site else None,
        "status": state.status.value,
        "state": state.state_name,
        "flapping": state.flapping,
        "since": iso_utc(state.since),
        "consecutive_failures": state.consecutive_failures,
        "incident_since": iso_utc(state.incident_started),
        "last": None
        if last is None
        else {
            "at": iso_utc(last.at),
            "ok": last.ok,
            "status": last.status,
            "total": round(last.total, 6),
            "reason": last.reason,
            "message": last.message,
        },
    }
