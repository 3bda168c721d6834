"""Wires the status page, the per-site pages, the history API and the badges to the daemon.

Routes: `/` (all sites), `/sites/<name>`, `/api/sites/<name>/history?resolution=hour|day&days=N`,
`/api/incidents?site=&limit=`, `/badge/<name>/status.svg`, `/badge/<name>/uptime.svg?period=30d`;
`annotate` adds the history figures to /api/status. Reads the daemon's live state through the
callables it is given and owns nothing but a reader of the store.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sentinel.config import SiteConfig
from sentinel.history.query import HistoryReader, Period
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.settings import StatusPageConfig
from sentinel.monitor import SiteState
from sentinel.web import Reply
from sentinel.webviews import badges
from sentinel.webviews.status_page import (
    SITES_PER_CHUNK,
    BlockCache,
    PageContext,
    SiteView,
    page_pieces,
    render_site_page,
)
from sentinel.zones import zone

HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
MAX_DAYS = {"hour": 35, "day": 400}
MAX_LIMIT = 1000
HOUR_S = 3600
KEPT_PER_FILL = 16  # sites completed at a time once every site's figures are kept
WARM_AFTER_HOUR_S = 2.0  # the page is warmed this long after each hour changes
WARM_IF_SERVED_S = 2 * 3600  # if it was served this recently

log = logging.getLogger("sentinel.web")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _json(status: int, body: object) -> Reply:
    text = json.dumps(body, ensure_ascii=False, indent=1)
    return Reply(status, JSON, text.encode())


def _error(status: int, message: str) -> Reply:
    return _json(status, {"error": message})


class StatusPages:
    def __init__(
        self,
        *,
        sites: Callable[[], Mapping[str, SiteConfig]],
        states: Callable[[], Mapping[str, SiteState]],
        settings: Callable[[], StatusPageConfig],
        recorder: HistoryRecorder | None,
        reader: HistoryReader | None,
        clock: Callable[[], float] = time.time,
        notes: Callable[[str], tuple[str, ...]] | None = None,
        extra_sections: Callable[[], Sequence[Callable[[PageContext], str]]] | None = None,
    ) -> None:
        """`notes(site)`: short facts under a site's state (pending, maintenance, ...);
        `extra_sections()`: whole sections above the sites (dead letters, early warnings,
        heartbeats), each rendered with the page's context."""
        self._notes = notes
        self._extra = extra_sections
        self._sites = sites
        self._states = states
        self._settings = settings
        self._recorder = recorder
        self._reader = reader
        self._clock = clock
        self._blocks = BlockCache()
        self.last_served: float | None = None  # when `/` was last asked for

    # ------------------------------------------------------------------ wiring

    def routes(
        self, existing: Mapping[str, Callable[[], Reply]] | None = None
    ) -> dict[str, Callable[[], Reply]]:
        """`/`, and `existing`'s `/api/status` wrapped so that its first call after a start
        (every site's kept figures to read, ~2 s at 1,000 sites) reads them in slices with the
        loop free in between (`_figures_first`) instead of in one go."""
        out: dict[str, Callable[[], Reply]] = {"/": self.index}
        api = None if existing is None else existing.get("/api/status")
        if api is not None:
            out["/api/status"] = self._figures_first(api)
        return out

    def _figures_first(self, route: Callable[[], Reply]) -> Callable[[], Reply]:
        def api_status() -> Reply:
            reader = self._reader
            if reader is None or not reader.missing(self._sites()):
                return route()
            loading = reader.preload(self._sites())

            def chunks() -> Iterator[bytes]:
                for _ in loading:
                    yield b""  # (the server sends nothing and hands the loop back)
                reply = route()
                if reply.chunks is None:
                    yield reply.body
                else:
                    yield from reply.chunks()

            # /api/status always answers 200 with JSON (web.make_routes)
            return Reply(200, JSON, chunks=chunks)

        return api_status

    def prefixes(self) -> dict[str, Callable[[str], Reply]]:
        return {
            "/sites/": self.site_page,
            "/api/sites/": self.api_history,
            "/api/incidents": self.api_incidents,
            "/badge/": self.badge,
        }

    def _context(self) -> PageContext:
        s = self._settings()
        return PageContext(s.title, self._clock(), zone(s.timezone), s.show_targets, s.public_url)

    def _view(
        self, name: str, state: SiteState | None, history: Any, site: SiteConfig | None = None
    ) -> SiteView:
        if site is None:
            site = self._sites().get(name)
        last = state.last if state is not None else None
        return SiteView(
            name=name,
            status=state.status.value if state is not None else "unknown",
            since=state.since if state is not None else None,
            last_at=last.at if last is not None else None,
            last_ok=last.ok if last is not None else None,
            last_reason=last.reason if last is not None else "",
            last_message=last.message if last is not None else "",
            target=site.target if site is not None else None,
            cert_expiry=None if self._recorder is None else self._recorder.cert_expiry.get(name),
            incident_started=state.incident_started if state is not None else None,
            history=history,
            notes=self._notes(name) if self._notes is not None else (),
        )

    # ------------------------------------------------------------------ pages

    def _page(self) -> Callable[[str], Iterator[bytes]]:
        """The all-sites page as of now (states, settings), rendered in pieces when called
        with an encoding (`status_page.page_pieces`)."""
        ctx = self._context()
        states = self._states()
        sites = self._sites()
        views = [self._view(n, states.get(n), None, site) for n, site in sites.items()]
        reader = self._reader

        def fill(chunk: Sequence[SiteView]) -> Sequence[SiteView]:
            # Each chunk's history is summarised when it is rendered, not all up front.
            if reader is None:
                return list(chunk)
            histories = reader.overview([v.name for v in chunk], ctx.now)
            for v in chunk:  # (views are built for this request alone)
                v.history = histories.get(v.name)
            return chunk

        # Room for every configured site; a removed site's blocks and figures go.
        self._blocks.limit = max(100, 2 * len(views))
        if len(self._blocks) > len(views):
            self._blocks.keep(sites)
        # Sites whose figures are kept are completed many at a time (a few microseconds
        # each); while some are still to be read from the store (~2 ms each), a few at a time.
        per_fill = SITES_PER_CHUNK
        if reader is not None:
            reader.forget(sites)
            if not reader.missing(sites):
                per_fill = KEPT_PER_FILL

        def pieces(encoding: str) -> Iterator[bytes]:
            extra = self._extra() if self._extra is not None else ()
            yield from page_pieces(
                views,
                ctx,
                extra,
                fill=fill,
                cache=self._blocks,
                per_fill=per_fill,
                encoding=encoding,
            )

        return pieces

    def index(self) -> Reply:
        """`/`: the page as it is, or (`Reply.deflated`, `Reply.gzipped`, for a client that
        takes them) as a zlib or gzip stream made mostly of the blocks kept compressed; the
        server picks by the request's Accept-Encoding. All from the same states, at the same
        second."""
        self.last_served = self._clock()
        reader = self._reader
        pieces: Callable[[str], Iterator[bytes]]
        if reader is not None and reader.missing(self._sites()):
            # The first request after a start (nothing is warmed before anyone asks: a page
            # nobody opens costs no memory): the warm-up's slices of a few milliseconds, the
            # loop handed back between them, then the page from what they prepared.
            def cold(encoding: str) -> Iterator[bytes]:
                for _ in self.warm_steps():
                    yield b""  # (the server sends nothing and hands the loop back)
                yield from self._page()(encoding)

            pieces = cold
        else:
            pieces = self._page()
        return Reply(
            200,
            HTML,
            chunks=lambda: pieces("identity"),
            deflated=lambda: pieces("deflate"),
            gzipped=lambda: pieces("gzip"),
        )

    # ------------------------------------------------------------------ ahead of requests

    def warm_steps(self) -> Iterator[None]:
        """What the first request would do, done ahead of it in slices of a few milliseconds
        (yields between them): every configured site's kept figures read from the store
        (`HistoryReader.preload`), then the page rendered into the block cache (the HTML thrown
        away). A request then finds the figures and the blocks ready and only fills in what
        changed since. Also used at each hour change, when every site's chart moves on."""
        if self._reader is not None:
            yield from self._reader.preload(self._sites())
        for _ in self._page()("none"):
            yield

    async def warm(self) -> None:
        """`warm_steps` with the event loop free between the slices."""
        for _ in self.warm_steps():
            # Twice: timers that fell due during a slice (probes, the web server's) run in the
            # loop's next round, which would otherwise run the next slice first.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def keep_warm(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        freeze: Callable[[], None] = gc.freeze,
    ) -> None:
        """The daemon's task for the page; never ends. At start: `freeze` (the garbage
        collector's `gc.freeze`: what start-up built, the config, the states, lives as long as
        the daemon, and frozen it is left out of every later full collection, which otherwise
        scans it all and holds the loop ~100 ms at 1,000 sites). Nothing is warmed at start: a
        page nobody opens costs no memory (~6 MiB at 1,000 sites); the first request does the
        warm-up's slices itself (`index`). Then WARM_AFTER_HOUR_S after each hour changes,
        `warm` again if the page was served in the last WARM_IF_SERVED_S: every site's chart
        moves on then, and the next request would pay for all of them (~0.5 ms a site)."""
        gc.collect(1)  # (only the young generations: start-up's short-lived garbage)
        freeze()
        while True:
            await sleep(HOUR_S - self._clock() % HOUR_S + WARM_AFTER_HOUR_S)
            last = self.last_served
            if last is not None and self._clock() - last <= WARM_IF_SERVED_S:
                await self._warm_logged()

    async def _warm_logged(self) -> None:
        try:
            await self.warm()
        except Exception:  # the page is an extra: never let its warm-up take the daemon down
            log.exception("status page: warm-up failed (the next request renders it)")

    def _site_name(self, target: str, prefix: str, suffix: str = "") -> str | None:
        path = urlsplit(target).path
        rest = path[len(prefix) :]
        if suffix:
            if not rest.endswith(suffix):
                return None
            rest = rest[: -len(suffix)]
        name = unquote(rest, errors="strict") if "/" not in rest else None
        return name if name is not None and name in self._sites() else None

    def site_page(self, target: str) -> Reply:
        try:
            name = self._site_name(target, "/sites/")
        except UnicodeDecodeError:
            name = None
        if name is None:
            return Reply(404, "text/plain; charset=utf-8", b"404 no such site\n")
        history = self._reader.site(name) if self._reader is not None else None
        view = self._view(name, self._states().get(name), history)
        return Reply(200, HTML, render_site_page(view, self._context()).encode())

    # ------------------------------------------------------------------ API

    def annotate(self, statuses: list[dict[str, Any]]) -> None:
        """Add the last check's age, the uptime figures and the certificate's expiry to the
        /api/status entries."""
        now = self._clock()
        names = [str(s.get("site")) for s in statuses]
        uptimes = self._reader.uptimes(names) if self._reader is not None else {}
        states = self._states()
        for entry in statuses:
            name = str(entry.get("site"))
            state = states.get(name)
            last = state.last if state is not None else None
            entry["last_check_age_seconds"] = (
                None if last is None else round(max(0.0, now - last.at), 1)
            )
            figures = uptimes.get(name)
            entry["uptime"] = (
                None
                if figures is None
                else {k: None if v is None else round(v, 6) for k, v in figures.items()}
            )
            expiry = None if self._recorder is None else self._recorder.cert_expiry.get(name)
            entry["cert_expires_at"] = None if expiry is None else _iso(int(expiry * 1000))
            entry["cert_days_left"] = None if expiry is None else int((expiry - now) // 86400)

    def api_history(self, target: str) -> Reply:
        try:
            name = self._site_name(target, "/api/sites/", "/history")
        except UnicodeDecodeError:
            name = None
        if name is None:
            return _error(404, "no such site")
        if self._reader is None:
            return _error(404, "history is off ([history] enabled = false)")
        query = parse_qs(urlsplit(target).query)
        resolution = query.get("resolution", ["hour"])[0]
        if resolution not in MAX_DAYS:
            return _error(400, "resolution: must be hour or day")
        try:
            days = int(query.get("days", ["1" if resolution == "hour" else "30"])[0])
        except ValueError:
            return _error(400, "days: must be a whole number")
        if not 1 <= days <= MAX_DAYS[resolution]:
            return _error(400, f"days: must be 1..{MAX_DAYS[resolution]} for {resolution}")
        periods = self._reader.rollups(name, resolution, days)
        return _json(
            200,
            {
                "site": name,
                "resolution": resolution,
                "periods": [_period_json(p) for p in periods],
            },
        )

    def api_incidents(self, target: str) -> Reply:
        if self._reader is None:
            return _error(404, "history is off ([history] enabled = false)")
        if urlsplit(target).path != "/api/incidents":
            return _error(404, "not found")
        query = parse_qs(urlsplit(target).query)
        site = query.get("site", [None])[0]
        if site is not None and site not in self._sites():
            return _error(404, "no such site")
        try:
            limit = int(query.get("limit", ["50"])[0])
        except ValueError:
            return _error(400, "limit: must be a whole number")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit: must be 1..{MAX_LIMIT}")
        from sentinel.history import db
        from sentinel.store import StoreError

        try:
            incidents = db.read_incidents(self._reader.store, site=site, limit=limit)
        except StoreError as exc:
            return _error(503, str(exc))
        show = self._settings().show_targets
        now_ms = int(self._clock() * 1000)
        return _json(
            200,
            {
                "incidents": [
                    {
                        "site": i.site,
                        "start": _iso(i.started_ms),
                        "end": _iso(i.ended_ms),
                        "duration_seconds": round(i.duration_ms(now_ms) / 1000, 3),
                        "first_reason": i.first_reason,
                        "first_message": i.first_message if show else None,
                        "last_reason": i.last_reason,
                        "last_message": i.last_message if show else None,
                        "alerts": i.alerts,
                        "excused_seconds": round(i.excused_ms / 1000, 3),
                    }
                    for i in incidents
                ]
            },
        )

    # ------------------------------------------------------------------ badges

    def badge(self, target: str) -> Reply:
        parts = urlsplit(target)
        rest = parts.path[len("/badge/") :]
        name_part, _, kind = rest.rpartition("/")
        try:
            name = unquote(name_part, errors="strict")
        except UnicodeDecodeError:
            name = ""
        if name not in self._sites() or kind not in ("status.svg", "uptime.svg"):
            return Reply(404, "text/plain; charset=utf-8", b"404 no such badge\n")
        state = self._states().get(name)
        if kind == "status.svg":
            status = state.status.value if state is not None else "unknown"
            return Reply(200, badges.CONTENT_TYPE, badges.status_badge(status).encode())
        period = parse_qs(parts.query).get("period", ["30d"])[0]
        if period not in ("24h", "7d", "30d", "90d"):
            return Reply(400, "text/plain; charset=utf-8", b"400 period: 24h, 7d, 30d or 90d\n")
        figures = self._reader.uptimes([name]).get(name) if self._reader is not None else None
        share = None if figures is None else figures.get(period)
        return Reply(200, badges.CONTENT_TYPE, badges.uptime_badge(period, share).encode())


def _period_json(p: Period) -> dict[str, Any]:
    r = p.rollup
    base: dict[str, Any] = {"start": _iso(p.start_ms)}
    if r is None:
        return {**base, "probes": 0, "uptime": None}
    p50, p95 = r.percentile_us(0.5), r.percentile_us(0.95)
    return {
        **base,
        "probes": r.probes,
        "failures": r.failures,
        "watched_seconds": r.covered_ms / 1000,
        "down_seconds": r.down_ms / 1000,
        # of down_seconds, in a maintenance window or a silence (not counted in uptime)
        "excused_seconds": r.excused_ms / 1000,
        "uptime": None if r.uptime() is None else round(r.uptime() or 0.0, 6),
        "latency_p50_ms": None if p50 is None else p50 / 1000,
        "latency_p95_ms": None if p95 is None else p95 / 1000,
        "latency_max_ms": r.lat_max_us / 1000 if r.good else None,
    }
