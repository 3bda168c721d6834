"""The HTML part of alert emails in a real headless browser (Debian's chromium driven by
Playwright, JavaScript off, as a mail client shows it): at 375 px nothing overflows, even with
hostile long site names and URLs; the state is a word and a shape, not a colour alone.
Screenshots go to $SENTINEL_TEST_ARTIFACTS/emails (default test-artifacts/ in the repository).
Skips when chromium or Playwright is missing, except under CI=true."""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from sentinel.config import EmailConfig
from sentinel.early.facts import DiskFacts, HostFacts, WatchFacts
from sentinel.heartbeats.messages import build_heartbeat_message
from sentinel.heartbeats.state import Late
from sentinel.monitor import Recovered, ResultSummary, WentDown
from sentinel.notify.diagnosis import Normal, Phases, diagnose
from sentinel.notify.message import MessageContext, build_message, site_page_url

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SENTINEL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SENTINEL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "emails"
IN_CI = os.environ.get("CI", "").lower() == "true"

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

CFG = EmailConfig(sender="sentinel <sentinel@example.org>", recipients=("owner@example.org",))
T0 = datetime(2026, 11, 26, 23, 10, 5, tzinfo=UTC).timestamp()
LONG_NAME = "blog-" + "x" * 95
LONG_URL = (
    "https://" + "very-long-subdomain-" * 6 + "example.org/" + "path/" * 60 + "?q=" + "z" * 300
)


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        missing("playwright is not installed")
    if not Path(CHROMIUM).exists():
        missing(f"no chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def down_email() -> EmailMessage:
    recent = tuple(
        ResultSummary(T0 + 60 * i, False, 0, 10.0, "timeout", "no response within 10s")
        for i in range(3)
    )
    found = diagnose(
        reason="timeout",
        message="no response within 10s",
        kind="http",
        phases=Phases(dns=0.003, connect=0.002),
        normal=Normal(Phases(dns=0.003, connect=0.002, processing=0.04, total=0.045), 16),
        watches=[
            WatchFacts(
                LONG_NAME,
                "unit " + LONG_NAME + ".service",
                3600,
                oom_kills=3,
                memory=500 * 2**20,
                limit=512 * 2**20,
                limit_source="memory.max",
                growth_per_s=48 * 2**20 / 86400,
                growth_over=9 * 86400,
            )
        ],
        host=HostFacts(steal=0.02, disks=(DiskFacts("/", 30e9, 40e9),)),
    )
    context = MessageContext(
        tz=zoneinfo.ZoneInfo("Europe/Zurich"),
        site_page=site_page_url("https://status.example.org/", LONG_NAME),
        summary=found.summary,
        diagnosis=found.lines,
        local=found.local,
    )
    event = WentDown(LONG_NAME, "i1", T0, T0 + 120, "timeout", "no response within 10s", recent)
    return build_message(event, email=CFG, target=LONG_URL, context=context)


def recovered_email() -> EmailMessage:
    ok = ResultSummary(T0 + 300, True, 200, 0.042, "ok", "HTTP 200 OK")
    event = Recovered(LONG_NAME, "i1", T0, T0 + 300, T0 + 301, (ok,))
    return build_message(event, email=CFG, target=LONG_URL)


def heartbeat_email() -> EmailMessage:
    event = Late(
        name=LONG_NAME,
        incident_id="1",
        at=T0,
        expected_at=T0 - 60,
        last_ping=T0 - 3600,
        started_at=None,
    )
    return build_heartbeat_message(event, email=CFG)


@pytest.mark.parametrize(
    ("name", "make", "state"),
    [
        ("down", down_email, "\u25bc DOWN"),
        ("recovered", recovered_email, "\u25b2 UP"),
        ("heartbeat-late", heartbeat_email, "\u25bc LATE"),
    ],
)
@pytest.mark.parametrize("width", [375, 1280])
def test_the_html_part_never_overflows_and_shows_the_state_in_words(
    browser: Browser, name: str, make: object, state: str, width: int
) -> None:
    assert callable(make)
    page = browser.new_page(java_script_enabled=False, viewport={"width": width, "height": 900})
    try:
        page.set_content(html_of(make()))
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        badge = page.locator(".state")
        assert badge.inner_text() == state  # a word and a shape, not a colour alone
        assert page.locator("h1").inner_text().startswith(LONG_NAME)
        if name == "down":
            assert "OOM-killed 3 times" in page.inner_text("body")
            assert page.locator(f'a[href="{LONG_URL}"]').count() == 1
            link = site_page_url("https://status.example.org/", LONG_NAME)
            assert page.locator(f'a[href="{link}"]').count() == 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    finally:
        page.close()
