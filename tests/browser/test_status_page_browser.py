"""The status page in a real headless browser: Debian's chromium driven by Playwright, JavaScript
off, at 1280 and 375 px. A known history is written to a real store; the page is served by the
real HTTP server on loopback; the DOM must show the figures computed here from that history.

Screenshots go to $SENTINEL_TEST_ARTIFACTS (default test-artifacts/ in the repository). axe-core
(installed by .ci/run with npm into .venv/axe, or $AXE_CORE_JS) checks for serious or critical
accessibility violations. Skips when chromium, Playwright or axe-core is missing, except under
CI=true, where that is a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import SiteConfig
from sentinel.history import db
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import BUCKET_BOUNDS_US, DAY_MS, HOUR_MS, Rollup, bucket_of
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.store import Store
from sentinel.web import WebServer
from sentinel.webviews.pages import StatusPages

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SENTINEL_CHROMIUM", "/usr/bin/chromium")
AXE_JS = Path(os.environ.get("AXE_CORE_JS", REPO / ".venv/axe/node_modules/axe-core/axe.min.js"))
ARTIFACTS = Path(os.environ.get("SENTINEL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
IN_CI = os.environ.get("CI", "").lower() == "true"

NOW = 1_781_526_600.0  # 2026-06-15 12:30 UTC
NOW_MS = int(NOW * 1000)
HOUR = NOW_MS // HOUR_MS
DAY = NOW_MS // DAY_MS
HOSTILE = '<script>alert("x")</script> \u202edlrow "quoted" & <b>'


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------- the known history


def hour_rollup(down_ms: int = 0, latency_us: int = 120_000, probes: int = 60) -> Rollup:
    r = Rollup(covered_ms=HOUR_MS, down_ms=down_ms)
    for i in range(probes):
        r.add_probe(True, latency_us if i % 10 else latency_us * 3)
    return r


def alpha_hours() -> dict[int, Rollup]:
    """100 days watched every hour up to the current one: 6 min down two hours ago, two half
    hours down three days ago, a whole hour down 40 days ago."""
    first = (DAY - 99) * 24
    hours = {h: hour_rollup() for h in range(first, HOUR + 1)}
    hours[HOUR - 2] = hour_rollup(down_ms=360_000)
    hours[(DAY - 3) * 24 + 10] = hour_rollup(down_ms=1_800_000)
    hours[(DAY - 3) * 24 + 11] = hour_rollup(down_ms=1_800_000)
    hours[(DAY - 40) * 24 + 5] = hour_rollup(down_ms=HOUR_MS)
    return hours


def beta_hours() -> dict[int, Rollup]:
    """Watched only for the last 10 days (sentinel was installed then): 90 d is 10 days' worth."""
    return {h: hour_rollup(latency_us=40_000) for h in range((DAY - 9) * 24, HOUR + 1)}


def expected_percent(hours: dict[int, Rollup], first_hour: int) -> str:
    rows = [r for h, r in hours.items() if h >= first_hour]
    covered = sum(r.covered_ms for r in rows)
    down = sum(r.down_ms for r in rows)
    if covered == 0:
        return "no data"
    if down == 0:
        return "100 %"
    return f"{math.floor((1 - down / covered) * 10000) / 100:.2f} %"


def expected_figures(hours: dict[int, Rollup]) -> dict[str, str]:
    return {
        "24h": expected_percent(hours, HOUR - 23),
        "7d": expected_percent(hours, (DAY - 6) * 24),
        "30d": expected_percent(hours, (DAY - 29) * 24),
        "90d": expected_percent(hours, (DAY - 89) * 24),
    }


SITES = {
    "alpha": SiteConfig(name="alpha", kind="http", target="http://10.1.2.3/health"),
    "beta": SiteConfig(name="beta", kind="tcp", target="10.1.2.4:5432"),
    HOSTILE: SiteConfig(name=HOSTILE, kind="http", target="http://10.1.2.5/"),
}


def states() -> dict[str, SiteState]:
    ok = ResultSummary(at=NOW - 7, ok=True, status=200, total=0.12, reason="ok", message="")
    bad = ResultSummary(
        at=NOW - 3,
        ok=False,
        status=0,
        total=10.0,
        reason="timeout",
        message="<img src=x onerror=alert(1)> timed out after 10s connecting to 10.1.2.5",
    )
    return {
        "alpha": SiteState(site="alpha", status=Status.UP, since=NOW - 7200, recent=(ok,)),
        "beta": SiteState(site="beta", status=Status.UP, since=NOW - 9 * 86400, recent=(ok,)),
        HOSTILE: SiteState(
            site=HOSTILE,
            status=Status.DOWN,
            since=NOW - 900,
            incident_id="x",
            incident_started=NOW - 900,
            recent=(bad,),
        ),
    }


def build_pages(store: Store) -> StatusPages:
    deltas = {("alpha", h): r for h, r in alpha_hours().items()}
    deltas.update({("beta", h): r for h, r in beta_hours().items()})
    db.write_hours(store, deltas)
    for k in range(12):  # 12 incidents of alpha: the page lists the latest 10
        start = NOW_MS - (k + 2) * 86400_000
        db.incident_opened(store, "alpha", start, "status", "HTTP 503 from 10.1.2.3")
        db.incident_updated(store, "alpha", start, alerts=1, ended_ms=start + (k + 1) * 60_000)
    db.incident_opened(store, HOSTILE, NOW_MS - 900_000, "timeout", '"><script>x</script>')
    recorder = HistoryRecorder(store, HistoryConfig(), lambda exc: None, clock=lambda: NOW)
    recorder.cert_expiry["alpha"] = NOW + 21 * 86400 + 60
    return StatusPages(
        sites=lambda: SITES,
        states=states,
        settings=lambda: StatusPageConfig(
            title="Acme status", show_targets=False, timezone="Europe/Zurich"
        ),
        recorder=recorder,
        reader=HistoryReader(store, recorder, clock=lambda: NOW),
        clock=lambda: NOW,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real HTTP server on 127.0.0.1 over a store of known history, in a thread of its own
    (Playwright's sync API holds this thread's event loop; SQLite wants one thread)."""
    state_dir = tmp_path_factory.mktemp("state")
    ready: list[int] = []
    started = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        with Store.open(state_dir) as store:
            pages = build_pages(store)
            server = WebServer(pages.routes(), prefixes=pages.prefixes())
            ready.append(await server.start("127.0.0.1:0"))
            stop.append((asyncio.get_running_loop(), asyncio.Event()))
            started.set()
            await stop[0][1].wait()
            await server.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60), "the test server did not start"
    if failure:
        raise failure[0]
    try:
        yield f"http://127.0.0.1:{ready[0]}"
    finally:
        loop, event = stop[0]
        loop.call_soon_threadsafe(event.set)
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        missing("Playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(
    browser: Browser,
    url: str,
    width: int,
    dark: bool = False,
    *,
    js: bool = False,
    encoding: str | None = None,
) -> Page:
    context = browser.new_context(
        java_script_enabled=js,
        viewport={"width": width, "height": 900},
        color_scheme="dark" if dark else "light",
    )
    page = context.new_page()
    response = page.goto(url, timeout=30_000)
    assert response is not None and response.status == 200
    if encoding is not None:  # (chromium asks for gzip, deflate, br, zstd)
        assert response.headers.get("content-encoding") == encoding
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def site(page: Page, name: str) -> Any:
    return page.locator(f"section[data-site='{name}']")


# ---------------------------------------------------------------------------- the tests


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 375])
def test_the_page_shows_the_figures_of_the_known_history(
    browser: Browser, served: str, width: int
) -> None:
    # (what the browser shows was sent compressed: the zlib stream of the blocks kept so)
    page = open_page(browser, served + "/", width, encoding="deflate")
    try:
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.title() == "Acme status"
        assert "1 of 3 sites is down" in page.locator(".banner").inner_text()
        for name, hours in (("alpha", alpha_hours()), ("beta", beta_hours())):
            section = site(page, name)
            for window, want in expected_figures(hours).items():
                assert section.locator(f"dd[data-window='{window}']").inner_text() == want
            # a lone day is a <rect>, days in a row that look the same one <path>: 90 in all
            days = section.locator("svg.bars [data-days]").evaluate_all(
                "els => els.reduce((n, e) => n + Number(e.dataset.days), 0)"
            )
            assert days == 90
        alpha = site(page, "alpha")
        assert alpha.locator(".state .word").inner_text() == "Up"
        assert "last check 7 s ago" in alpha.locator(".state").inner_text()
        # the day 40 days ago: one hour down, said in its bar's <title> and in the table
        label = dt.datetime.fromtimestamp((DAY - 40) * 86400, dt.UTC).strftime("%Y-%m-%d")
        titles = alpha.locator("svg.bars [data-days] title").all_text_contents()
        assert f"{label}: 95.83 % up, down 1 h" in titles
        assert alpha.locator("table td", has_text=label).count() == 1
        # latency of the latest hour: 60 probes, 54 at 120 ms and 6 at 360 ms; p50 is the upper
        # bound of 120 ms's bucket, p95 the true maximum (below its bucket's bound)
        p50 = BUCKET_BOUNDS_US[bucket_of(120_000)]
        assert alpha.locator("[data-latency='p50']").inner_text() == f"{p50 / 1000:.0f} ms"
        assert alpha.locator("[data-latency='p95']").inner_text() == "360 ms"
        assert alpha.locator("[data-cert-days]").get_attribute("data-cert-days") == "21"
        assert alpha.locator("ul.incidents li").count() == 10
        # beta has no data before it was installed: a stub bar, "no data" in the title
        assert (
            "no data"
            in site(page, "beta").locator("svg.bars [data-days] title").first.text_content()
        )
        # times carry their offset (Europe/Zurich is +02:00 in June)
        assert "+02:00" in alpha.locator(".state time").inner_text()
        # the hostile site: its name, reason and incident are text, nothing ran or was injected
        hostile = page.locator("section.site").first
        assert hostile.locator("h2").inner_text() == HOSTILE.replace("\u202e", "\u202e")
        assert hostile.locator(".state .word").inner_text() == "Down"
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0
        assert "10.1.2." not in page.locator("body").inner_text()  # show_targets = false
        assert no_horizontal_scroll(page), f"horizontal scroll at {width} px"
        screenshot(page, f"status-{width}")
    finally:
        page.context.close()


@pytest.mark.slow
def test_the_site_page_and_dark_mode_at_phone_width(browser: Browser, served: str) -> None:
    page = open_page(browser, served + "/sites/alpha", 375, dark=True)
    try:
        assert page.locator("h1").inner_text() == "alpha"
        assert page.locator("ul.incidents li").count() == 12  # every incident kept
        assert "7 days" in page.locator("figure.latency figcaption").inner_text()
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 17, 23)"  # prefers-color-scheme: dark
        assert no_horizontal_scroll(page)
        screenshot(page, "site-375-dark")
    finally:
        page.context.close()
    from urllib.parse import quote

    page = open_page(browser, served + "/sites/" + quote(HOSTILE, safe=""), 375)
    try:
        assert page.locator("h1").inner_text() == HOSTILE
        assert page.locator("script").count() == 0
    finally:
        page.context.close()


@pytest.mark.slow
@pytest.mark.parametrize("dark", [False, True])
def test_no_serious_or_critical_accessibility_violations(
    browser: Browser, served: str, dark: bool
) -> None:
    if not AXE_JS.is_file():
        missing(f"axe-core not found at {AXE_JS} (npm install --prefix .venv/axe axe-core)")
    for path in ("/", "/sites/alpha"):
        # The page has no script of its own: with JavaScript on it renders the same, and
        # axe-core (the test's script) can run.
        page = open_page(browser, served + path, 1280, dark=dark, js=True)
        try:
            assert page.locator("script").count() == 0
            page.add_script_tag(content=AXE_JS.read_text())
            result = page.evaluate(
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
                " nodes: v.nodes.slice(0, 3).map(n => n.html)})))"
            )
            bad = [v for v in result if v["impact"] in ("serious", "critical")]
            assert not bad, f"{path} (dark={dark}): {bad}"
        finally:
            page.context.close()
