"""The context of a site's alert email: the display time zone, the link to the site's page,
and for a DOWN the diagnosis (`sentinel.notify.diagnosis`) from the failed probe's phase times,
the site's normal (its last good probes' phase times, the latency-drift baseline) and the early
warnings' facts about the local services it names in `watch`.

A thin, bounded shell: per site, the last failed probe result (until a good one) and a fixed
ring of good probes' phases (`PhaseNormals`, 320 bytes). The daemon feeds it every result
(`observe`), forgets removed sites, and the dispatcher calls it when it renders an email.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from functools import lru_cache

from sentinel.config import Config, SiteConfig
from sentinel.early.service import EarlyWarnings
from sentinel.monitor import Event, WentDown
from sentinel.notify.diagnosis import Normal, PhaseNormals, Phases, diagnose
from sentinel.notify.message import MessageContext, site_page_url
from sentinel.probes.result import ProbeResult
from sentinel.zones import zone

__all__ = ["AlertContext", "basic_context", "display_tz"]


@lru_cache(maxsize=8)
def display_tz(name: str) -> tzinfo | None:
    """The `[sentinel] timezone` as a tzinfo; None for UTC (or a name the machine lost since the
    config was checked)."""
    if not name or name.upper() in ("UTC", "ETC/UTC", "Z"):
        return None
    try:
        return zone(name)
    except ValueError:
        return None


def basic_context(config: Config, site: str) -> MessageContext:
    """What any email of `site` may say without a diagnosis: the time zone and the page link."""
    page = config.status_page
    tz = display_tz(page.timezone) if page is not None else None
    public = config.status_url or ""
    return MessageContext(tz=tz, site_page=site_page_url(public, site))


def _phases(result: ProbeResult) -> Phases:
    return Phases(
        dns=result.dns,
        connect=result.connect,
        tls=result.tls,
        processing=result.processing,
        total=result.total if result.ok else None,
    )


class AlertContext:
    """Construct once per daemon; `observe` every probe result; pass as the dispatcher's
    `message_context`."""

    def __init__(
        self,
        early: Callable[[], EarlyWarnings | None] = lambda: None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._early = early
        self._clock = clock
        self._last: dict[str, ProbeResult] = {}
        self._normals: dict[str, PhaseNormals] = {}

    def observe(self, site: str, result: ProbeResult) -> None:
        """One probe result (hot path: for a good probe five floats into its ring; a failed
        one is kept until the next good one, for the diagnosis of a DOWN)."""
        if not result.ok:
            self._last[site] = result
            return
        if self._last:
            self._last.pop(site, None)
        normals = self._normals.get(site)
        if normals is None:
            normals = self._normals[site] = PhaseNormals()
        normals.add_times(result.dns, result.connect, result.tls, result.processing, result.total)

    def forget(self, site: str) -> None:
        self._last.pop(site, None)
        self._normals.pop(site, None)

    def normal(self, site: str) -> Normal | None:
        normals = self._normals.get(site)
        normal = normals.normal() if normals is not None else None
        early = self._early()
        baseline = early.latency_baseline(site) if early is not None else None
        if baseline is None:
            return normal
        if normal is None:
            return Normal(Phases(), samples=0, baseline=baseline[0], baseline_span=baseline[1])
        return Normal(normal.phases, normal.samples, baseline[0], baseline[1])

    def __call__(self, event: Event, site: SiteConfig, config: Config) -> MessageContext:
        base = basic_context(config, site.name)
        if not isinstance(event, WentDown):
            return base
        last = self._last.get(site.name)
        early = self._early()
        watches = []
        host = None
        if early is not None and site.watch:
            watches = early.watch_facts(site.watch, self._clock())
            host = early.host_facts()
        use_last = last is not None and not last.ok and last.reason == event.reason
        found = diagnose(
            reason=event.reason,
            message=event.message,
            kind=site.kind,
            phases=_phases(last) if use_last and last is not None else None,
            normal=self.normal(site.name),
            status=last.status if use_last and last is not None else 0,
            watches=watches,
            host=host,
        )
        return MessageContext(
            tz=base.tz,
            site_page=base.site_page,
            summary=found.summary,
            diagnosis=found.lines,
            local=found.local,
        )
