"""The status page as HTML: pure, server-rendered, inline SVG and CSS, no JavaScript.

Every piece of text that comes from a config or a remote server goes through `text()`: escaped,
control characters replaced, and wrapped in <bdi> so a right-to-left name cannot reorder the
line around it. State is a word and a shape, never a colour alone; charts have a <title> per
bar and a table with the same figures. The page is rendered in pieces (`render_page` yields
chunks) so the server can stream a page of thousands of sites with the loop free in between.

Composable: the banner and each block of a site are separate functions (`SITE_SECTIONS`), and
`render_page` takes extra page sections, so other features add theirs without editing these.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import NamedTuple, Protocol, cast
from urllib.parse import quote

from sentinel.durations import duration
from sentinel.history.db import Incident
from sentinel.history.query import PAGE_DAYS, LazyHistory, Period, SiteHistory
from sentinel.history.rollup import uptime_of
from sentinel.sanitize import escape_html, html_text
from sentinel.webviews.deflate import (
    FINAL_BLOCK,
    STORED_HEAD,
    Packer,
    ZlibStream,
    adler32_combine,
    crc32_combine,
    inflate,
    stored,
)
from sentinel.zones import zone_name

SITES_PER_CHUNK = 4  # sites completed (`fill`) at a time: the most read from the store at once
CHUNK_SECONDS = 0.005  # a piece of the page is sent once this much time went into it
PIECE_BYTES = 256 * 1024  # or once it holds this many bytes (what the page holds at once)
_EPOCH = date(1970, 1, 1)
WINDOW_LABELS = (("24h", "24 h"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"))
STATE_WORDS = {"up": "Up", "down": "Down", "unknown": "Unknown"}


@dataclass(slots=True)
class SiteView:
    """One site as the page shows it, built for one request (`fill` sets its history)."""

    name: str
    status: str  # "up", "down", "unknown"
    since: float | None = None
    last_at: float | None = None
    last_ok: bool | None = None
    last_reason: str = ""
    last_message: str = ""
    target: str | None = None
    cert_expiry: float | None = None
    incident_started: float | None = None
    history: SiteHistory | LazyHistory | None = None
    # Short facts shown under the state (pending, flapping, maintenance, silenced), as text.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PageContext:
    title: str
    now: float
    tz: tzinfo
    show_targets: bool = False
    public_url: str = ""
    detail: bool = False  # a site's own page: every day in the table, every incident
    # The age of the last check as a NUL, filled in per request (`site_block` caches the rest).
    age_placeholder: bool = False


# ---------------------------------------------------------------------------- formatting


def text(value: object) -> str:
    """Site-supplied text -> safe HTML: escaped, no control characters, direction isolated."""
    return "<bdi>" + escape_html(html_text(str(value))) + "</bdi>"


def attr(value: object) -> str:
    return escape_html(html_text(str(value)), quote=True)


def when(ts: float, ctx: PageContext, *, seconds: bool = False) -> str:
    """'2026-12-01 21:03 +01:00' in the page's time zone (the offset always shown)."""
    return _when(ts, ctx.tz, seconds)


# Sized to what is drawn again soon (the since times of sites DOWN, drawn at every request), not to
# every time on the page: the block cache keeps the drawn text, so a full redraw misses anyway. At
# 8,192 entries each, these two memos filled over hours to ~3 MiB (a soak's slow growth).
_TIMES_KEPT = 256


@functools.lru_cache(maxsize=_TIMES_KEPT)
def _when(ts: float, tz: tzinfo, seconds: bool) -> str:
    dt = datetime.fromtimestamp(ts, tz)
    offset = dt.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else "+00:00"
    return dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + offset


def iso(ts: float, ctx: PageContext) -> str:
    return datetime.fromtimestamp(ts, ctx.tz).isoformat(timespec="seconds")


def time_tag(ts: float, ctx: PageContext) -> str:
    return _time_tag(ts, ctx.tz)


@functools.lru_cache(maxsize=_TIMES_KEPT)
def _time_tag(ts: float, tz: tzinfo) -> str:
    iso_text = datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
    return f'<time datetime="{iso_text}">{_when(ts, tz, False)}</time>'


def percent(share: float | None) -> str:
    """Uptime share -> '99.95 %', rounded down so a bad minute never shows as 100 %."""
    if share is None:
        return "no data"
    if share >= 1.0:
        return "100 %"
    return f"{math.floor(share * 10000) / 100:.2f} %"


def ms_text(us: int | None) -> str:
    if us is None:
        return "-"
    if us >= 1_000_000:
        return f"{us / 1_000_000:.2f} s"
    return f"{us / 1000:.0f} ms" if us >= 10_000 else f"{us / 1000:.1f} ms"


@functools.lru_cache(maxsize=8)
def shape(status: str) -> str:
    """The state's shape: a circle (up), a triangle (down), a diamond (unknown)."""
    paths = {
        "up": '<circle cx="8" cy="8" r="7"/>',
        "down": '<path d="M8 1 15 15H1z"/>',
    }
    inner = paths.get(status, '<path d="M8 1 15 8 8 15 1 8z"/>')
    return f'<svg class="shape {status}" viewBox="0 0 16 16" aria-hidden="true">{inner}</svg>'


def site_href(name: str) -> str:
    return "/sites/" + quote(name, safe="")


# ---------------------------------------------------------------------------- the page

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#57606a;--up:#1a7f37;
--down:#cf222e;--part:#9a6700;--none:#6e7781;--maint:#0969da;--line:#d0d7de;--card:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;
--up:#3fb950;--down:#ff7b72;--part:#d29922;--none:#8b949e;--maint:#58a6ff;--line:#30363d;
--card:#161b22}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:62rem;padding:1rem;font:16px/1.5 system-ui,sans-serif;
background:var(--bg);color:var(--fg);overflow-wrap:anywhere}
h1{font-size:1.6rem;margin:.2em 0}h2{font-size:1.2rem;margin:0}
h3{font-size:1rem;margin:.6rem 0 .2rem}
a{color:inherit}.muted{color:var(--muted)}
.banner{padding:.6rem 1rem;border:3px solid var(--up);border-radius:.4rem;font-weight:600}
.banner.down{border-color:var(--down)}
.site{border:1px solid var(--line);border-radius:.4rem;padding:.8rem 1rem;margin:1rem 0;
background:var(--card)}
.state{font-weight:600;margin:.2rem 0}.state.up{color:var(--up)}.state.down{color:var(--down)}
.state.unknown{color:var(--muted)}
svg.shape{width:1em;height:1em;vertical-align:-.15em;fill:currentColor}
.banner svg.shape.up{fill:var(--up)}.banner svg.shape.down{fill:var(--down)}
dl.uptime{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;margin:.4rem 0}
dl.uptime div{display:flex;gap:.35rem}dt{color:var(--muted)}dd{margin:0;font-weight:600}
figure{margin:.5rem 0}figcaption{font-size:.9rem;color:var(--muted)}
svg.bars{width:100%;height:2.2rem;display:block}
svg.chart{width:100%;height:auto;max-height:9rem;display:block}
.b-up{fill:var(--up)}.b-part{fill:var(--part)}.b-down{fill:var(--down)}.b-none{fill:var(--none)}
.b-maint{fill:var(--maint)}
.bars path{fill:none;stroke-dasharray:8 2}.bars path.b-up{stroke:var(--up)}
.bars path.b-part{stroke:var(--part)}.bars path.b-down{stroke:var(--down)}
.bars path.b-none{stroke:var(--none)}.bars path.b-maint{stroke:var(--maint)}
.p50{stroke:var(--fg);fill:none;stroke-width:2}.p95{stroke:var(--part);fill:none;stroke-width:2;
stroke-dasharray:5 3}.axis{stroke:var(--line)}.lbl{fill:var(--muted);font-size:11px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9rem}
td,th{padding:.2rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
summary{cursor:pointer}ul.incidents{padding-left:1.2rem;margin:.2rem 0}
"""


def banner(sites: Sequence[SiteView], ctx: PageContext) -> str:
    down = [s for s in sites if s.status == "down"]
    if not sites:
        return '<p class="banner up" role="status">No sites are configured.</p>'
    if down:
        word = "sites is" if len(down) == 1 else "sites are"
        return (
            f'<p class="banner down" role="status">{shape("down")} '
            f"{len(down)} of {len(sites)} {word} down</p>"
        )
    unknown = sum(1 for s in sites if s.status == "unknown")
    tail = f" ({unknown} not checked yet)" if unknown else ""
    return f'<p class="banner up" role="status">{shape("up")} All sites are up{tail}</p>'


def state_block(site: SiteView, ctx: PageContext) -> str:
    word = STATE_WORDS.get(site.status, "Unknown")
    since = f" since {time_tag(site.since, ctx)}" if site.since is not None else ""
    age = "\x00" if ctx.age_placeholder else age_text(site, ctx)
    target = ""
    if ctx.show_targets and site.target:
        target = f'<p class="muted target">{text(site.target)}</p>'
    notes = ""
    if site.notes:
        notes = '<p class="notes">' + " &middot; ".join(text(n) for n in site.notes) + "</p>"
    return (
        f'<p class="state {site.status}" data-state="{site.status}">{shape(site.status)} '
        f'<span class="word">{word}</span>{since} <span class="muted age">&middot; {age}</span></p>'
        + notes
        + target
    )


def age_text(site: SiteView, ctx: PageContext) -> str:
    if site.last_at is None:
        return "never checked"
    return f"last check {duration(ctx.now - site.last_at)} ago"


def history_of(site: SiteView) -> SiteHistory | None:
    """The site's full history (built now if the view carries a lazy one)."""
    h = site.history
    return h.build(None) if isinstance(h, LazyHistory) else h


def uptime_block(site: SiteView, ctx: PageContext) -> str:
    h = site.history  # (a LazyHistory has the figures too)
    if h is None:
        return ""
    cells = "".join(
        f'<div><dt>{label}</dt><dd data-window="{key}">{percent(h.uptime.get(key))}</dd></div>'
        for key, label in WINDOW_LABELS
    )
    return f'<dl class="uptime" aria-label="Uptime">{cells}</dl>'


def _day_label(period: Period, ctx: PageContext) -> str:
    return _date_of(period.start_ms // 86_400_000)


@functools.lru_cache(maxsize=512)
def _date_of(day: int) -> str:
    """A UTC day number -> 'YYYY-MM-DD' (cached: the page names the same 90 days all day)."""
    return (_EPOCH + timedelta(days=day)).isoformat()


def _day_facts(
    covered_ms: int, down_ms: int, excused_ms: int = 0
) -> tuple[str, int, str, float | None]:
    """(bar class, bar height of 30, text, uptime) of a day: full when up, shorter the worse,
    a stub when there is no data; a day with downtime in a maintenance window or a silence is
    its own colour (b-maint) and says so (that downtime is not counted, see `uptime_of`)."""
    if covered_ms <= 0:
        return "b-none", 6, "no data", None
    u = uptime_of(covered_ms, down_ms, excused_ms)
    cls, height, text_ = _day_look(
        -1 if u is None else math.floor(u * 10000),
        (down_ms - excused_ms) // 1000,
        excused_ms // 1000,
    )
    return cls, height, text_, u


@functools.lru_cache(maxsize=256)
def _day_look(basis_points: int, down_s: int, excused_s: int = 0) -> tuple[str, int, str]:
    # Cached on what is shown (most days of most sites are 100 % up): the page builds tens of
    # thousands of these. Small: a day with downtime is mostly its own key (today's bar of a
    # site DOWN is a new one on every request), and 4,096 of them were ~1 MiB that filled slowly.
    down = f", down {duration(down_s)}" if down_s else ""
    excused = f", {duration(excused_s)} down in maintenance or silenced" if excused_s else ""
    if basis_points < 0:  # all of the day's watched time was excused downtime
        return "b-maint", 30, f"in maintenance or silenced{excused}"
    shown = (
        "100 %" if basis_points >= 10000 else f"{basis_points // 100}.{basis_points % 100:02d} %"
    )
    text_ = f"{shown} up{down}{excused}"
    if excused_s and basis_points >= 9990:
        return "b-maint", 30, text_
    if basis_points >= 9990:
        return "b-up", 30, text_
    if basis_points >= 9500:
        return "b-part", 22, text_
    return "b-down", 14, text_


class _Days:
    """The days block drawn a day at a time, oldest first (`add`), then `finish`ed: the bars
    (days in a row that look the same are one run), and the table's rows. A copy of one that
    has the 89 past days added is what `BlockCache.days_text` keeps for a site whose block is
    drawn again and again the same day (a DOWN site: today's bar changes with every poll)."""

    __slots__ = ("bars", "detail", "empty", "full", "rows", "run")

    def __init__(self, detail: bool) -> None:
        self.detail = detail
        self.bars: list[str] = []
        self.rows: list[str] = []
        self.full = self.empty = 0
        self.run: list[tuple[int, str, str, int, str]] = []  # (x, label, class, height, text)

    def copy(self) -> _Days:
        other = _Days(self.detail)
        other.bars, other.rows, other.run = list(self.bars), list(self.rows), list(self.run)
        other.full, other.empty = self.full, self.empty
        return other

    def _draw(self) -> None:
        # A lone day is a <rect>; on the all-sites page, days in a row that look the same are
        # one <path> with one <title> (a site's 90 bars in ~1 KiB instead of ~8).
        run = self.run
        if len(run) == 1:
            x, label, cls, height, day_text = run[0]
            self.bars.append(
                f'<rect class="{cls}" x="{x}" y="{30 - height}" width="8" height="{height}"'
                f' data-days="1"><title>{label}: {day_text}</title></rect>'
            )
        elif run:
            # One dashed stroke: 8 units of bar, 2 of gap, the bar's height thick.
            x, first, cls, height, day_text = run[0]
            self.bars.append(
                f'<path class="{cls}" d="M{x} {30 - height / 2:g}h{10 * len(run) - 2}"'
                f' stroke-width="{height}" data-days="{len(run)}"><title>{first} to'
                f" {run[-1][1]}: {day_text} (each of {len(run)} days)</title></path>"
            )
        self.run = []

    def add(self, i: int, label: str, facts: tuple[str, int, str, float | None]) -> None:
        """Day `i` (0: the oldest shown), its label and its `_day_facts`."""
        cls, height, day_text, u = facts
        run = self.run
        if run and (self.detail or (run[-1][2], run[-1][4]) != (cls, day_text)):
            self._draw()
        self.run.append((i * 10, label, cls, height, day_text))
        # The all-sites page lists the days that were not fully up (the rest in one line), to
        # stay small at thousands of sites; a site's own page lists every day with data.
        if u is None and cls == "b-none":
            self.empty += 1
        elif u is not None and u >= 1.0 and cls == "b-up" and not self.detail:
            self.full += 1
        else:
            self.rows.append(f"<tr><td>{label}</td><td>{day_text}</td></tr>")

    def finish(self, n: int) -> str:
        """The block of `n` days (this drawing is used up)."""
        self._draw()
        rows = self.rows
        rows.reverse()
        if self.full:
            rows.append(f"<tr><td>{self.full} other days</td><td>100 % up</td></tr>")
        if self.empty:
            rows.append(f"<tr><td>{self.empty} days</td><td>no data</td></tr>")
        return (
            f'<figure class="days"><svg class="bars" viewBox="0 0 {10 * n} 30" role="img"'
            f' preserveAspectRatio="none" aria-label="Daily uptime, last {n} days">'
            + "".join(self.bars)
            + f"</svg><figcaption>Daily uptime, last {n} days (UTC days; taller is better, a"
            " stub is no data, blue had downtime in a maintenance window or a silence, not"
            " counted)</figcaption></figure>"
            f"<details><summary>Daily uptime as a table</summary>"
            f'<div class="scroll"><table><thead><tr><th scope="col">Day (UTC)</th>'
            f'<th scope="col">Uptime</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</div></details>"
        )


_NO_DATA = ("b-none", 6, "no data", None)


def _period_facts(period: Period) -> tuple[str, int, str, float | None]:
    r = period.rollup
    return _NO_DATA if r is None else _day_facts(r.covered_ms, r.down_ms, r.excused_ms)


def days_block(site: SiteView, ctx: PageContext) -> str:
    h = history_of(site)
    if h is None or not h.days:
        return ""
    days = _Days(ctx.detail)
    for i, period in enumerate(h.days):
        days.add(i, _day_label(period, ctx), _period_facts(period))
    return days.finish(len(h.days))


def latency_block(site: SiteView, ctx: PageContext) -> str:
    h = history_of(site)
    if h is None or not h.hours:
        return ""
    both = [p.p50_p95() for p in h.hours]
    p50 = [b[0] for b in both]
    p95 = [b[1] for b in both]
    top = max((v for v in p95 if v is not None), default=None)
    n = len(h.hours)
    span = f"{n // 24} days" if n > 24 else f"{n} hours"
    if top is None:
        return f'<p class="muted latency">Latency, last {span}: no data</p>'
    width, height = 480, 100
    step = width / max(1, n - 1)

    def lines(values: Sequence[int | None], cls: str) -> str:
        out: list[str] = []
        points: list[str] = []
        for i, v in enumerate([*values, None]):
            if v is None:
                if len(points) == 1:  # a lone hour between gaps: a dot
                    x, y = points[0].split(",")
                    out.append(f'<circle class="{cls}" cx="{x}" cy="{y}" r="2"/>')
                elif points:
                    out.append(f'<polyline class="{cls}" points="{" ".join(points)}"/>')
                points = []
                continue
            points.append(f"{i * step:.1f},{height - 5 - (v / top) * (height - 20):.1f}")
        return "".join(out)

    last50 = next((v for v in reversed(p50) if v is not None), None)
    last95 = next((v for v in reversed(p95) if v is not None), None)
    return (
        f'<figure class="latency"><svg class="chart" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="Latency, last {span}">'
        f"<title>Latency, last {span}: p50 {ms_text(last50)}, p95 {ms_text(last95)}"
        f" in the latest hour; the top of the chart is {ms_text(top)}</title>"
        f'<line class="axis" x1="0" y1="{height - 5}" x2="{width}" y2="{height - 5}"/>'
        f'<text class="lbl" x="2" y="12">{ms_text(top)}</text>'
        + lines(p95, "p95")
        + lines(p50, "p50")
        + f"</svg><figcaption>Latency per hour, last {span}: median (p50, solid)"
        f' <span data-latency="p50">{ms_text(last50)}</span>, p95 (dashed)'
        f' <span data-latency="p95">{ms_text(last95)}</span> in the latest hour'
        "</figcaption></figure>"
    )


def cert_block(site: SiteView, ctx: PageContext) -> str:
    if site.cert_expiry is None:
        return ""
    days = int((site.cert_expiry - ctx.now) // 86400)
    left = f"{days} days left" if days >= 0 else f"expired {-days} days ago"
    return (
        f'<p class="cert">Certificate: <span data-cert-days="{days}">{left}</span>'
        f" (expires {time_tag(site.cert_expiry, ctx)})</p>"
    )


def _reason(reason: str, message: str, ctx: PageContext) -> str:
    # A failure message may name internal hosts and addresses: only with show_targets.
    if ctx.show_targets and message:
        return f"{text(reason)}: {text(message)}"
    return text(reason)


def current_incident_block(site: SiteView, ctx: PageContext) -> str:
    if site.status != "down" or site.incident_started is None:
        return ""
    lasted = duration(ctx.now - site.incident_started)
    return (
        f'<p class="incident-now"><strong>Current incident</strong>: down since'
        f" {time_tag(site.incident_started, ctx)} ({lasted}),"
        f" {_reason(site.last_reason, site.last_message, ctx)}</p>"
    )


def incident_item(incident: Incident, ctx: PageContext) -> str:
    start = incident.started_ms / 1000
    lasted = duration(incident.duration_ms(int(ctx.now * 1000)) / 1000)
    state = "ongoing" if incident.ended_ms is None else "lasted"
    reason = _reason(incident.first_reason, incident.first_message, ctx)
    if (incident.last_reason, incident.last_message) != (
        incident.first_reason,
        incident.first_message,
    ):
        reason += ", then " + _reason(incident.last_reason, incident.last_message, ctx)
    alerts = f", {incident.alerts} alert{'s' if incident.alerts != 1 else ''}"
    if incident.excused_ms > 0:
        alerts += (
            f", {duration(incident.excused_ms / 1000)} of it in a maintenance window or"
            " silenced (not counted as downtime)"
        )
    return f"<li>{time_tag(start, ctx)}, {state} {lasted}: {reason}{alerts}</li>"


def incidents_block(site: SiteView, ctx: PageContext) -> str:
    h = history_of(site)
    if h is None:
        return ""
    if not h.incidents:
        return '<p class="muted">No incidents recorded.</p>'
    items = "".join(incident_item(i, ctx) for i in h.incidents)
    return f'<h3>Incidents (latest {len(h.incidents)})</h3><ul class="incidents">{items}</ul>'


SiteSection = Callable[[SiteView, PageContext], str]
SITE_SECTIONS: tuple[SiteSection, ...] = (
    state_block,
    uptime_block,
    days_block,
    latency_block,
    cert_block,
    current_incident_block,
    incidents_block,
)


_SECTIONS = SITE_SECTIONS  # the sections `_site_key` knows the inputs of

# The blocks drawn from the history alone, and which part of a `HistoryKey` each depends on.
HISTORY_PARTS: dict[SiteSection, str] = {
    uptime_block: "uptime",
    days_block: "days",
    latency_block: "hours",
    incidents_block: "incidents",
}


class Segment(NamedTuple):
    """Text compressed once (`deflate.Packer.segment`): its deflate data (ending at a flush
    point), and the Adler-32, the CRC-32 and the length of the text."""

    data: bytes
    check: int
    crc: int
    size: int


# A piece of a site's block: text, or a segment.
Item = str | Segment
SHARED_SEGMENTS = 1024  # short texts whose segment is shared by every site showing them
SHARED_CHARS = 64


_PART_INDEX = {"uptime": 0, "days": 1, "hours": 2, "incidents": 3}  # of a `HistoryKey`
# `_Cached.nums`: the Adler-32, CRC-32 and length of the text before the age, of the text
# after it, then of each history block's (`_PART` numbers each)
_BEFORE, _AFTER, _PARTS_AT, _PART = 0, 3, 6, 3
_NUMS = "I"  # each fits in 32 bits unsigned (a checksum, or the length of a site's text)


class _Cached:
    """What the page keeps of one site.

    - Each history block (the parts of a `HistoryKey`, in `_PART_INDEX` order), compressed:
      its part of the key (`keys`), its segment's deflate data (`data`), and in `nums` its
      text's Adler-32, CRC-32 and length.
    - The whole block, compressed, but for the age of its last check: the deflate data
      `before` the age and the segments' data `after` it (the history segments are the very
      bytes of `data`: no second copy), its key (`key`; None: none kept), and in `nums` the
      Adler-32 and the length of both texts (a stream's trailer adds them up without reading
      them), and their CRC-32s (the same for gzip).

    The numbers in one array and the parts in two tuples, not an object a part: ~0.5 KiB a
    site less (bench/page_memory.py)."""

    __slots__ = ("after", "before", "data", "key", "keys", "nums")

    def __init__(self) -> None:
        self.key: tuple[object, ...] | None = None
        self.before = b""
        self.after: tuple[bytes, ...] = ()
        self.keys: tuple[object, ...] = (None, None, None, None)
        self.data: tuple[bytes | None, ...] = (None, None, None, None)
        self.nums = array(_NUMS, [0]) * (_PARTS_AT + 4 * _PART)

    def set_part(self, i: int, key: object, segment: Segment) -> None:
        keys, datas = list(self.keys), list(self.data)
        keys[i], datas[i] = key, segment.data
        self.keys, self.data = tuple(keys), tuple(datas)
        at = _PARTS_AT + _PART * i
        self.nums[at : at + _PART] = array(_NUMS, segment[1:])

    def part(self, i: int) -> Segment:
        """History block `i` (it must be kept: `data[i]` not None)."""
        at = _PARTS_AT + _PART * i
        check, crc, size = self.nums[at : at + _PART]
        return Segment(cast(bytes, self.data[i]), check, crc, size)


class BlockCache:
    """The history blocks last rendered for each site, reused while the part of the site's
    `HistoryKey` they depend on (and the page's settings) is the same: polled every few seconds,
    most sites' 90-day bars, charts and incident lists have not changed. Kept compressed
    (deflate segments, ~2 KiB a site instead of ~6 KiB of text): a client that takes
    `Content-Encoding: deflate` gets them as they are, another one gets them inflated. Kept
    per history block, not only as the whole site block: the latest hour's latency moves every
    few minutes, and a site's chart is then drawn and compressed again alone, not its four
    blocks (~1.4 ms). Bounded: `limit` sites (the first cached go first), and `keep` drops the
    sites no longer configured."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._sites: dict[str, _Cached] = {}
        self.hits = self.misses = 0  # whole site blocks reused, made again
        self.renders = 0  # history blocks rendered
        # The page's settings the blocks were drawn with (time zone, show_targets, detail):
        # other settings (a reload) start afresh, so a block's key is its part alone.
        self._settings: tuple[object, ...] | None = None
        # `days_text`: DOWN sites' past days kept drawn (DAYS_KEPT at most), and the day on
        # which it was found full of that day's
        self._days_drawn: dict[str, tuple[tuple[int, int], _Days]] = {}
        self._days_full_on: int | None = None

    def use(self, settings: tuple[object, ...]) -> None:
        """Blocks drawn with `settings` from now on: those drawn with others are dropped."""
        if settings != self._settings:
            self._sites.clear()
            self._days_drawn.clear()
            self._days_full_on = None
            self._settings = settings

    def days_text(self, name: str, lazy: LazyHistory, ctx: PageContext) -> str | None:
        """A DOWN site's days block, from its 89 past days kept drawn, with today's bar added;
        None: draw it as usual. A DOWN site's today changes with every poll (its uptime moves
        a basis point every ~9 s of downtime), and drawing its 90 days afresh costs ~0.7 ms,
        ~70 ms a request with 100 sites down. Bounded: DAYS_KEPT sites; when full, those kept
        from another day go, and past that the first kept stay (others are drawn as usual:
        keeping the most recent would, with more sites DOWN than that, keep each until just
        before its next turn)."""
        tag = lazy.past_days
        kept = self._days_drawn
        drawn = kept.pop(name, None)
        if drawn is not None and drawn[0] == tag:
            past = drawn[1]
        else:
            if len(kept) >= DAYS_KEPT:
                if self._days_full_on == tag[0]:
                    return None  # (looked through once today: all of today)
                for other in [n for n, (t, _) in kept.items() if t[0] != tag[0]]:
                    del kept[other]
                if len(kept) >= DAYS_KEPT:
                    self._days_full_on = tag[0]
                    return None
            built = lazy.build("days").days
            if len(built) != PAGE_DAYS:
                return None
            past = _Days(ctx.detail)
            for i, period in enumerate(built[:-1]):
                past.add(i, _day_label(period, ctx), _period_facts(period))
        kept[name] = (tag, past)
        days = past.copy()
        today = lazy.today
        days.add(
            PAGE_DAYS - 1, _date_of(tag[0]), _NO_DATA if today == (0, 0, 0) else _day_facts(*today)
        )
        return days.finish(PAGE_DAYS)

    def forget_days(self, name: str) -> None:
        """The site is not DOWN: its past days need not be kept drawn."""
        if self._days_drawn.pop(name, None) is not None:
            self._days_full_on = None

    def site(self, name: str) -> _Cached:
        entry = self._sites.get(name)
        if entry is None:
            entry = self._sites[name] = _Cached()
            if len(self._sites) > self.limit:
                # (the oldest first: a dict keeps its order of insertion)
                for old in list(self._sites)[: len(self._sites) - self.limit]:
                    del self._sites[old]
        return entry

    def keep(self, names: Iterable[str]) -> None:
        """Drop the blocks of every site but `names` (the configured ones)."""
        wanted = set(names)
        for name in [n for n in self._sites if n not in wanted]:
            del self._sites[name]
        for name in [n for n in self._days_drawn if n not in wanted]:
            self.forget_days(name)

    def __len__(self) -> int:
        return len(self._sites)


DAYS_KEPT = 256  # DOWN sites whose past days `BlockCache.days_text` keeps drawn (~2-3 KiB each)


def _site_body(
    site: SiteView, ctx: PageContext, cache: BlockCache | None, packer: Packer
) -> list[Item]:
    lazy = site.history if isinstance(site.history, LazyHistory) else None
    if lazy is None or cache is None:
        return [section(site, ctx) for section in SITE_SECTIONS]
    entry = cache.site(site.name)
    out: list[Item] = []
    for section in SITE_SECTIONS:
        part = HISTORY_PARTS.get(section)
        if part is None:
            out.append(section(site, ctx))
            continue
        # A history block is rendered again only when its part of the key changed.
        i = _PART_INDEX[part]
        part_key = getattr(lazy.key, part)
        old_key = entry.keys[i]
        if entry.data[i] is None or old_key != part_key:
            cache.renders += 1
            rendered = None
            if part == "days":
                if site.status == "down":
                    rendered = cache.days_text(site.name, lazy, ctx)
                else:
                    cache.forget_days(site.name)
            if rendered is None:
                saved, site.history = site.history, lazy.build(part)
                try:
                    rendered = section(site, ctx)
                finally:
                    site.history = saved
            segment = Segment(*packer.segment(rendered.encode()))
            entry.set_part(i, part_key, segment)
        else:
            segment = entry.part(i)
            if old_key is not part_key:
                # (the key of now, equal: the very object the whole block's key holds, one copy)
                keys = list(entry.keys)
                keys[i] = part_key
                entry.keys = tuple(keys)
        out.append(segment)
    return out


def _settings(ctx: PageContext) -> tuple[object, ...]:
    """The page's settings a history block is drawn with (`BlockCache.use`)."""
    return (zone_name(ctx.tz), ctx.show_targets, ctx.detail)


def _site_key(site: SiteView, ctx: PageContext, index: int) -> tuple[object, ...] | None:
    """Everything a site's block shows but the age of its last check, or None when it cannot
    be cached: history not from the reader, other sections than these, or the site DOWN (its
    current incident's duration grows)."""
    lazy = site.history
    if not isinstance(lazy, LazyHistory) or site.status == "down":
        return None
    if SITE_SECTIONS != _SECTIONS:
        return None
    cert_days = None if site.cert_expiry is None else int((site.cert_expiry - ctx.now) // 86400)
    # (not the page's settings: `BlockCache.use` starts afresh when they change)
    return (
        index,
        site.status,
        site.since,
        site.last_at is None,
        site.target,
        site.notes,
        site.cert_expiry,
        cert_days,
        lazy.key,
    )


def site_block(
    site: SiteView,
    ctx: PageContext,
    index: int,
    *,
    link: bool = True,
    cache: BlockCache | None = None,
) -> str:
    """One site's <section> (`site_fragments` joined)."""
    return "".join(site_fragments(site, ctx, index, link=link, cache=cache))


def site_fragments(
    site: SiteView,
    ctx: PageContext,
    index: int,
    *,
    link: bool = True,
    cache: BlockCache | None = None,
) -> list[str]:
    """One site's <section> as strings to join. With a `cache` and a lazy history, a site whose
    block would be the same as last time but for the age of its last check is that block with
    the age put in: polled every few seconds, most sites cost a comparison."""
    packer = Packer()
    if cache is not None:
        cache.use(_settings(ctx))
    if cache is None or not link or ctx.detail:
        return [_text_of(i) for i in _site_parts(site, ctx, index, link, cache, packer=packer)]
    sink = _Plain()
    _add_site(sink, site, ctx, index, cache, packer=packer)
    return [sink.take().decode()]


def _add_site(
    sink: _Sink,
    site: SiteView,
    ctx: PageContext,
    index: int,
    cache: BlockCache | None,
    *,
    packer: Packer,
) -> None:
    """The site's block (linked, all-sites page) added to `sink`."""
    key = None if cache is None or ctx.detail else _site_key(site, ctx, index)
    if key is None or cache is None:
        sink.items(_site_parts(site, ctx, index, True, cache, packer=packer))
        return
    entry = cache.site(site.name)
    if entry.key is not None and entry.key == key:
        cache.hits += 1
    else:
        cache.misses += 1
        parts = _site_parts(
            site, replace(ctx, age_placeholder=True), index, True, cache, packer=packer
        )
        _split_age(entry, key, parts, packer)
    sink.cached(entry, age_text(site, ctx))


def _split_age(entry: _Cached, key: tuple[object, ...], items: list[Item], packer: Packer) -> None:
    """The site's whole block kept in `entry`, split at the age's placeholder (a NUL, in the
    state block): the text before it compressed in one, the rest as the history segments with
    the texts between them compressed."""
    i = next(i for i, p in enumerate(items) if isinstance(p, str) and "\x00" in p)
    head_text, tail = cast(str, items[i]).split("\x00", 1)
    before = ("".join(map(_text_of, items[:i])) + head_text).encode()
    after = _segments([tail, *items[i + 1 :]], packer)
    check, crc, size = 1, 0, 0
    for s in after:
        check = adler32_combine(check, s.check, s.size)
        crc = crc32_combine(crc, s.crc, s.size)
        size += s.size
    entry.key = key
    entry.before = packer.deflate(before)
    entry.after = tuple(s.data for s in after)
    entry.nums[_BEFORE : _AFTER + 3] = array(
        _NUMS, (zlib.adler32(before), zlib.crc32(before), len(before), check, crc, size)
    )


_shared: dict[str, Segment] = {}


def _segments(items: Iterable[Item], packer: Packer) -> list[Segment]:
    """Items as segments: texts next to each other in one; nothing for an empty text. A short
    text ('</section>', the end of the state line) is one segment shared by every site."""
    out: list[Segment] = []
    texts: list[str] = []

    def flush() -> None:
        text_ = "".join(texts)
        texts.clear()
        if not text_:
            return
        if len(text_) > SHARED_CHARS:
            out.append(Segment(*packer.segment(text_.encode())))
            return
        shared = _shared.get(text_)
        if shared is None:
            if len(_shared) >= SHARED_SEGMENTS:
                _shared.clear()
            shared = _shared[text_] = Segment(*packer.segment(text_.encode()))
        out.append(shared)

    for item in items:
        if isinstance(item, str):
            texts.append(item)
            continue
        flush()
        if item.size:
            out.append(item)
    flush()
    return out


def _text_of(item: Item) -> str:
    return item if isinstance(item, str) else inflate(item.data).decode()


def _site_parts(
    site: SiteView,
    ctx: PageContext,
    index: int,
    link: bool,
    cache: BlockCache | None,
    *,
    packer: Packer,
) -> list[Item]:
    name = f'<a href="{site_href(site.name)}">{text(site.name)}</a>' if link else text(site.name)
    body = _site_body(site, ctx, cache, packer)
    opening = (
        f'<section class="site" aria-labelledby="s{index}" data-site="{attr(site.name)}">'
        f'<h2 id="s{index}">{name}</h2>'
    )
    if body and isinstance(body[0], str):
        body[0] = opening + body[0]
    else:
        body.insert(0, opening)
    body.append("</section>")
    return body


# ---------------------------------------------------------------------------- the pieces


class _Sink(Protocol):
    """Where the page's pieces go: texts and segments in, bytes to send out (`take`)."""

    size: int  # about what the current piece holds, in bytes

    def text(self, value: str) -> None: ...
    def items(self, items: Iterable[Item]) -> None: ...
    def cached(self, whole: _Cached, age: str) -> None: ...
    def take(self) -> bytes: ...
    def end(self) -> bytes: ...


class _Plain:
    """The page as it is (no `Content-Encoding`): a piece is put together as deflate data, its
    texts as stored blocks, and inflated in one go when taken (one call a piece, not one a
    site)."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0  # bytes of text

    def text(self, value: str) -> None:
        data = value.encode()
        self.parts.append(stored(data))
        self.size += len(data)

    def items(self, items: Iterable[Item]) -> None:
        for item in items:
            if isinstance(item, str):
                self.text(item)
            else:
                self.parts.append(item.data)
                self.size += item.size

    def cached(self, whole: _Cached, age: str) -> None:
        data = age.encode()  # (a few dozen bytes: one stored block)
        n = len(data)
        parts = self.parts
        parts += (whole.before, STORED_HEAD(0, n, n ^ 0xFFFF), data)
        parts += whole.after
        nums = whole.nums
        self.size += nums[_BEFORE + 2] + n + nums[_AFTER + 2]

    def take(self) -> bytes:
        data = b"".join(self.parts)
        size = self.size
        self.parts, self.size = [], 0
        return zlib.decompress(data + FINAL_BLOCK, -zlib.MAX_WBITS, max(size, 1024))

    def end(self) -> bytes:
        return self.take()


class _Deflated:
    """The page as a zlib stream (`Content-Encoding: deflate`; with `gzip`, a gzip stream):
    the cached segments as they
    are, the rest (head, banner, the ages of the last checks, blocks not cached) compressed or
    stored as it comes (`deflate.ZlibStream`)."""

    __slots__ = ("_pending", "parts", "size", "stream")

    def __init__(self, packer: Packer, *, gzip: bool = False) -> None:
        self.stream = ZlibStream(packer, gzip=gzip)
        self.parts: list[bytes] = [self.stream.start()]
        self._pending: list[str] = []  # texts not compressed yet (compressed together)
        # Bytes of text in the piece (not of deflate data): pieces as long in sites, and as
        # short in time, as those of the page sent as it is.
        self.size = 0

    def _flush(self) -> None:
        if self._pending:
            data = self.stream.text("".join(self._pending).encode())
            self._pending.clear()
            self.parts.append(data)

    def text(self, value: str) -> None:
        self._pending.append(value)
        self.size += len(value)

    def items(self, items: Iterable[Item]) -> None:
        for item in items:
            if isinstance(item, str):
                self.text(item)
            else:
                self._flush()
                self.parts.append(self.stream.segment(*item))
                self.size += item.size

    def cached(self, whole: _Cached, age: str) -> None:
        if self._pending:
            self._flush()
        stream = self.stream
        data = age.encode()
        # (`ZlibStream.segment`, `text` and `segment` again, inline: this runs for every site;
        # the age is a few dozen bytes: one stored block)
        n = len(data)
        before_adler, before_crc, before_size, after_adler, after_crc, after_size = whole.nums[:6]
        if stream.gzip:
            check = zlib.crc32(data, crc32_combine(stream.check, before_crc, before_size))
            stream.check = crc32_combine(check, after_crc, after_size)
        else:
            check = zlib.adler32(data, adler32_combine(stream.check, before_adler, before_size))
            stream.check = adler32_combine(check, after_adler, after_size)
        size = before_size + n + after_size
        stream.size += size
        parts = self.parts
        parts += (whole.before, STORED_HEAD(0, n, n ^ 0xFFFF), data)
        parts += whole.after
        self.size += size

    def take(self) -> bytes:
        self._flush()
        out = b"".join(self.parts)
        self.parts, self.size = [], 0
        return out

    def end(self) -> bytes:
        return self.take() + self.stream.end()


class _Discard:
    """Nothing sent: the page rendered for its cache alone (`StatusPages.warm`)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def text(self, value: str) -> None:
        pass

    def items(self, items: Iterable[Item]) -> None:
        pass

    def cached(self, whole: _Cached, age: str) -> None:
        pass

    def take(self) -> bytes:
        return b""

    def end(self) -> bytes:
        return b""


def head(title: str, ctx: PageContext) -> str:
    # No <meta http-equiv="refresh">: a page that reloads itself fails WCAG 2.2.1 (axe-core
    # rates it critical); a reader reloads when they want.
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{attr(title)}</title><style>{CSS}</style></head><body>"
    )


def footer(ctx: PageContext) -> str:
    return (
        f'<footer class="muted"><p>Updated {when(ctx.now, ctx, seconds=True)}'
        f" ({text(zone_name(ctx.tz))}). Times carry their UTC offset. Served by sentinel.</p>"
        "</footer></body></html>"
    )


ENCODINGS = ("identity", "deflate", "gzip", "none")


def page_pieces(
    sites: Sequence[SiteView],
    ctx: PageContext,
    extra_sections: Sequence[Callable[[PageContext], str]] = (),
    fill: Callable[[Sequence[SiteView]], Sequence[SiteView]] | None = None,
    cache: BlockCache | None = None,
    *,
    per_fill: int = SITES_PER_CHUNK,
    encoding: str = "identity",
) -> Iterator[bytes]:
    """The all-sites page in pieces of bytes, down sites first. Sites are completed (`fill`:
    their history) and rendered `per_fill` (SITES_PER_CHUNK) at a time, and a piece is yielded
    once CHUNK_SECONDS went into it (or it holds PIECE_BYTES), so the server sends it with the
    event loop free in between: each piece holds the loop a few milliseconds, however many
    sites. `cache` reuses unchanged blocks. `encoding`: "identity" (UTF-8 HTML), "deflate" (a
    zlib stream of the same HTML, RFC 1950), "gzip" (a gzip stream of it, RFC 1952) or "none"
    (empty pieces: the cache filled alone)."""
    packer = Packer()
    sink: _Sink
    if encoding in ("deflate", "gzip"):
        sink = _Deflated(packer, gzip=encoding == "gzip")
    elif encoding == "identity":
        sink = _Plain()
    elif encoding == "none":
        sink = _Discard()
    else:
        raise ValueError(f"encoding: one of {ENCODINGS}, not {encoding!r}")
    if cache is not None:
        cache.use(_settings(ctx))
    ordered = sorted(sites, key=lambda s: (s.status != "down", s.status != "unknown", s.name))
    # A site's element ids (`<h2 id="s7">`) carry its place in `sites` (the configured order),
    # not in `ordered`: a site going down moves to the top, and with display positions every
    # site after it got new ids, so its cached block no longer matched (all drawn again).
    number = {s.name: i for i, s in enumerate(sites)}
    sink.text(
        head(ctx.title, ctx)
        + f"<header><h1>{escape_html(ctx.title)}</h1>{banner(ordered, ctx)}</header><main>"
        + "".join(section(ctx) for section in extra_sections)
    )
    yield sink.take()
    began = time.perf_counter()
    for start in range(0, len(ordered), per_fill):
        chunk = ordered[start : start + per_fill]
        if fill is not None:
            chunk = list(fill(chunk))
        for i, s in enumerate(chunk):
            _add_site(
                sink, s, ctx, number.get(s.name, len(sites) + start + i), cache, packer=packer
            )
            # (checked a site at a time: a site rendered afresh costs ~1.5 ms)
            if sink.size >= PIECE_BYTES or time.perf_counter() - began >= CHUNK_SECONDS:
                yield sink.take()
                began = time.perf_counter()  # (the time between pieces is not this page's)
    sink.text("</main>" + footer(ctx))
    yield sink.end()


def render_page(
    sites: Sequence[SiteView],
    ctx: PageContext,
    extra_sections: Sequence[Callable[[PageContext], str]] = (),
    fill: Callable[[Sequence[SiteView]], Sequence[SiteView]] | None = None,
    cache: BlockCache | None = None,
    *,
    per_fill: int = SITES_PER_CHUNK,
) -> Iterator[str]:
    """The all-sites page in pieces of text (`page_pieces`, "identity")."""
    for piece in page_pieces(sites, ctx, extra_sections, fill, cache, per_fill=per_fill):
        yield piece.decode()


def render_site_page(site: SiteView, ctx: PageContext) -> str:
    """One site: 90 days, 7 days of hourly latency, every incident kept."""
    ctx = replace(ctx, detail=True)
    title = f"{site.name} · {ctx.title}"
    return (
        head(title, ctx)
        + f'<header><p><a href="/">← {escape_html(ctx.title)}</a></p></header><main>'
        + site_block(site, ctx, 0, link=False)
        .replace('<h2 id="s0">', '<h1 id="s0">', 1)
        .replace("</h2>", "</h1>", 1)
        + "</main>"
        + footer(ctx)
    )
