"""The status page renderer (pure): hostile text stays text, figures and times as documented."""

from __future__ import annotations

from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sentinel.history.db import Incident
from sentinel.history.query import Period, SiteHistory
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup
from sentinel.webviews.badges import status_badge, uptime_badge
from sentinel.webviews.status_page import (
    PageContext,
    SiteView,
    percent,
    render_page,
    render_site_page,
    when,
)

NOW = 1_767_225_600.0 + 13 * 3600  # 2026-01-01 13:00 UTC
UTC = ZoneInfo("UTC")
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "h1",
    "h2",
    "h3",
    "p",
    "svg",
    "circle",
    "path",
    "main",
    "section",
    "a",
    "bdi",
    "span",
    "time",
    "dl",
    "div",
    "dt",
    "dd",
    "figure",
    "rect",
    "figcaption",
    "details",
    "summary",
    "table",
    "thead",
    "tr",
    "th",
    "tbody",
    "td",
    "line",
    "text",
    "polyline",
    "ul",
    "li",
    "strong",
    "footer",
}


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def history(uptime: float | None = 0.5) -> SiteHistory:
    r = Rollup(probes=60, failures=30, covered_ms=HOUR_MS, down_ms=HOUR_MS // 2)
    for _ in range(30):
        r.add_probe(True, 120_000)
    day = int(NOW * 1000) // DAY_MS
    hour = int(NOW * 1000) // HOUR_MS
    return SiteHistory(
        uptime={"24h": uptime, "7d": 0.99995, "30d": None, "90d": 1.0},
        days=tuple(Period((day - 89 + i) * DAY_MS, r if i % 2 else None) for i in range(90)),
        hours=tuple(Period((hour - 23 + i) * HOUR_MS, r if i > 3 else None) for i in range(24)),
        incidents=(
            Incident(
                "x",
                int((NOW - 7200) * 1000),
                int((NOW - 3600) * 1000),
                "timeout",
                "connect to 10.0.0.7 timed out",
                "status",
                "HTTP 502",
                3,
            ),
        ),
    )


def parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    return c


hostile = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
) | st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "\u202eevil\u202c",
        "a\x00b\x1bc",
        "' onmouseover='x",
    ]
)


@settings(max_examples=30, deadline=None)
@given(hostile, hostile, hostile, st.booleans())
def test_hostile_names_and_reasons_render_as_text(
    name: str, reason: str, message: str, show: bool
) -> None:
    assume("SECRET" not in name + reason)
    message = "SECRET-" + message
    site = SiteView(
        name=name,
        status="down",
        since=NOW - 60,
        last_at=NOW - 5,
        last_ok=False,
        last_reason=reason,
        last_message=message,
        target=f"http://{message}/",
        incident_started=NOW - 60,
        history=history(),
    )
    ctx = PageContext("Status <b>", NOW, ZoneInfo("Europe/Zurich"), show_targets=show)
    for page in ("".join(render_page([site], ctx)), render_site_page(site, ctx)):
        c = parse(page)
        assert c.tags <= ALLOWED_TAGS
        assert not any(k.startswith("on") for k, _ in c.attrs)
        text = "".join(c.text)
        assert "\x00" not in text and "\x1b" not in text
        if name.isprintable():
            assert name in text
        if not show:
            assert "SECRET-" not in text


def test_show_targets_false_hides_urls_and_messages() -> None:
    site = SiteView(
        name="api",
        status="down",
        since=NOW - 60,
        last_at=NOW - 5,
        last_ok=False,
        last_reason="timeout",
        last_message="connect to 10.0.0.7 timed out",
        target="http://10.0.0.7:8080/health",
        incident_started=NOW - 60,
        history=history(),
    )
    hidden = "".join(render_page([site], PageContext("S", NOW, UTC, show_targets=False)))
    shown = "".join(render_page([site], PageContext("S", NOW, UTC, show_targets=True)))
    assert "10.0.0.7" not in hidden
    assert "timeout" in hidden
    assert "10.0.0.7:8080/health" in shown and "connect to 10.0.0.7 timed out" in shown


def test_figures_state_and_times_carry_the_offset() -> None:
    site = SiteView(
        name="blog",
        status="up",
        since=NOW - 3600,
        last_at=NOW - 12,
        last_ok=True,
        cert_expiry=NOW + 45 * 86400 + 5,
        history=history(0.999949),
    )
    page = "".join(render_page([site], PageContext("S", NOW, ZoneInfo("Europe/Zurich"))))
    assert '<html lang="en">' in page and 'name="viewport"' in page
    assert '<span class="word">Up</span>' in page and '<circle cx="8"' in page
    assert "2026-01-01 13:00 +01:00" in page  # since, in Zurich time
    assert "last check 12 s ago" in page
    assert '<dd data-window="24h">99.99 %</dd>' in page  # rounded down, never up to 100
    assert '<dd data-window="7d">99.99 %</dd>' in page
    assert '<dd data-window="30d">no data</dd>' in page
    assert '<dd data-window="90d">100 %</dd>' in page
    assert page.count("<rect ") == 90 and page.count("<title>") >= 91
    assert "45 days left" in page
    assert "lasted 1 h" in page and "3 alerts" in page
    assert "<script" not in page


def test_banner_counts_down_sites_with_a_shape_and_a_word() -> None:
    sites = [SiteView(name="a", status="down"), SiteView(name="b", status="up")]
    page = "".join(render_page(sites, PageContext("S", NOW, UTC)))
    assert "1 of 2 sites is down" in page
    assert page.index('data-site="a"') < page.index('data-site="b"')  # down first


def test_percent_and_time_formatting() -> None:
    assert percent(None) == "no data"
    assert percent(1.0) == "100 %"
    assert percent(0.99999) == "99.99 %"
    assert percent(0.5) == "50.00 %"
    ctx = PageContext("S", NOW, ZoneInfo("America/New_York"))
    assert when(NOW, ctx) == "2026-01-01 08:00 -05:00"
    assert when(NOW, PageContext("S", NOW, UTC)) == "2026-01-01 13:00 +00:00"


def test_badges_say_the_state_and_the_uptime() -> None:
    assert ">down</text>" in status_badge("down")
    assert ">unknown</text>" in status_badge("weird")
    assert ">99.95%</text>" in uptime_badge("30d", 0.99951)
    assert ">no data</text>" in uptime_badge("30d", None)
