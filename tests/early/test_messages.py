"""Early-warning emails: the promised subjects, the numbers in the body, threading, safe headers."""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.early.events import OomEvent, TrendEnded, TrendStarted
from sentinel.early.messages import (
    build_early_message,
    early_message_kind,
    early_subject,
    format_approx,
    format_bytes,
    format_latency,
    format_rate,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
DAY = 86400.0
AT = datetime(2023, 1, 6, 18, 15, tzinfo=UTC).timestamp()
SENDER = "sentinel <sentinel@example.org>"
TO = ["owner@example.org", "ops@example.org"]

CREEPING = TrendStarted(
    kind="creeping",
    subject="salsa-party-web-server",
    trend_id="creeping:salsa-party-web-server:1672990000.000",
    at=AT,
    since=AT - 1800,
    level=612 * MIB,
    rate_per_s=48 * MIB / DAY,
    limit=1 * GIB,
    limit_source="memory.max",
    seconds_to_limit=3.1 * DAY,
    samples=1437,
    buckets=48,
    covered=DAY,
    window=DAY,
    evaluations=2,
    source="unit salsa-party-web-server.service",
)
DISK = TrendStarted(
    kind="disk",
    subject="/",
    trend_id="disk:/:1.000",
    at=AT,
    since=AT,
    level=38 * GIB,
    rate_per_s=1 * GIB / DAY,
    limit=40 * GIB,
    seconds_to_limit=2 * DAY,
    samples=1000,
    buckets=40,
    covered=20 * 3600,
    window=DAY,
)
SLOWER = TrendStarted(
    kind="slower",
    subject="shop",
    trend_id="slower:shop:1.000",
    at=AT,
    since=AT - 600,
    level=0.82,
    usual=0.31,
    samples=120,
    buckets=12,
    covered=3600,
    window=7 * DAY,
    evaluations=3,
)
STEAL = TrendStarted(
    kind="steal", subject="cpu", trend_id="steal:cpu:1.000", at=AT, since=AT, level=0.35, limit=0.2
)
SELF = TrendStarted(
    kind="self",
    subject="sentinel",
    trend_id="self:sentinel:1.000",
    at=AT,
    since=AT,
    level=85 * MIB,
    rate_per_s=12 * MIB / DAY,
    limit=16 * GIB,
    limit_source="MemTotal",
    seconds_to_limit=1300 * DAY,
)
OOM = OomEvent(
    watch="salsa-party-web-server",
    event_id="oom:salsa-party-web-server:1.000",
    at=AT,
    oom_kills=1,
    high_events=0,
    level=1 * GIB,
    limit=1 * GIB,
    limit_source="memory.max",
    source="unit salsa-party-web-server.service",
)


def body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text


def build(event: object) -> email.message.EmailMessage:
    return build_early_message(event, sender=SENDER, recipients=TO)  # type: ignore[arg-type]


def test_the_creeping_subject_is_the_one_promised() -> None:
    assert (
        early_subject(CREEPING) == "[sentinel] CREEPING: salsa-party-web-server memory "
        "+48 MiB/day, reaches its 1 GiB limit in ~3 days"
    )


def test_creeping_toward_the_host_ram_says_so() -> None:
    event = replace(CREEPING, limit=16 * GIB, limit_source="MemTotal", seconds_to_limit=20 * DAY)
    assert early_subject(event).endswith("reaches the host's 16 GiB of RAM in ~20 days")


def test_the_other_subjects_are_the_ones_promised() -> None:
    assert early_subject(DISK) == "[sentinel] DISK: / fills in ~2 days"
    assert early_subject(SLOWER) == "[sentinel] SLOWER: shop median 820 ms vs 310 ms usual"
    assert early_subject(STEAL) == "[sentinel] STEAL: CPU steal 35% (warning at 20%)"
    assert early_subject(SELF) == "[sentinel] SELF: sentinel's own memory +12 MiB/day (now 85 MiB)"
    assert early_subject(OOM) == (
        "[sentinel] OOM: salsa-party-web-server — 1 process killed by the out-of-memory killer"
    )
    high = replace(OOM, oom_kills=0, high_events=37)
    assert early_subject(high) == (
        "[sentinel] OOM: salsa-party-web-server hit memory.high (1 GiB), throttled 37 times"
    )


def test_resolved_quotes_the_subject_of_the_warning() -> None:
    ended = TrendEnded(warning=CREEPING, at=AT + DAY, reason="restarted", level=90 * MIB)
    assert early_subject(ended) == (
        "[sentinel] RESOLVED: CREEPING: salsa-party-web-server memory +48 MiB/day, "
        "reaches its 1 GiB limit in ~3 days"
    )


def test_the_creeping_body_states_the_numbers_and_what_to_do() -> None:
    text = body(build(CREEPING))
    for needle in (
        "unit salsa-party-web-server.service",
        "612 MiB",
        "+48 MiB/day",
        "1 GiB (memory.max)",
        "~3 days",
        "1437 samples in 48 buckets covering 24h of a 24h window",
        "confirmed on 2 evaluations in a row",
        "caches without expiry",
    ):
        assert needle in text, needle


def test_the_other_bodies_state_their_numbers() -> None:
    disk = body(build(DISK))
    assert "38 GiB of 40 GiB" in disk and "Available:" in disk and "2 GiB" in disk
    assert "du -xh" in disk
    slower = body(build(SLOWER))
    assert "820 ms (120 probes over the last 1h)" in slower
    assert "Lasted:    24h 30m" in body(
        build(TrendEnded(warning=CREEPING, at=AT + DAY, reason="x"))
    )
    assert "310 ms (over 7d)" in slower and "2.6x" in slower
    assert "sentinel_probe_phase_seconds" in slower
    assert "CPU credits" in body(build(STEAL))
    assert "bug in sentinel" in body(build(SELF))
    oom = body(build(OOM))
    assert "out-of-memory killer killed 1 process(es)" in oom and "journalctl -u" in oom


def test_headers_date_from_the_event_and_ids_in_the_sender_domain() -> None:
    msg = build(CREEPING)
    assert msg["From"] == SENDER
    assert msg["To"] == "owner@example.org, ops@example.org"
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == AT
    assert msg["Message-ID"].startswith("<early.creeping.")
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["In-Reply-To"] is None
    assert msg["X-Sentinel-Kind"] == "creeping"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_resolved_threads_to_its_warning() -> None:
    warning = build(CREEPING)
    ended = build(TrendEnded(warning=CREEPING, at=AT + DAY, reason="stopped rising: flat"))
    assert ended["In-Reply-To"] == warning["Message-ID"]
    assert ended["References"] == warning["Message-ID"]
    assert ended["Message-ID"] != warning["Message-ID"]
    assert "The trend has ended (stopped rising: flat)" in body(ended)


def test_a_restart_resolution_explains_that_the_leak_may_come_back() -> None:
    text = body(build(TrendEnded(warning=CREEPING, at=AT + DAY, reason="restarted")))
    assert "restarted" in text and "warns again" in text


def test_a_removed_or_changed_watch_says_why_its_warning_closes() -> None:
    removed = body(build(TrendEnded(warning=CREEPING, at=AT + DAY, reason="removed")))
    assert "removed from sentinel's config" in removed and "no longer watches" in removed
    changed = body(build(TrendEnded(warning=CREEPING, at=AT + DAY, reason="changed")))
    assert "starts its trend afresh" in changed and "warns again" in changed


def test_the_same_event_gives_the_same_bytes() -> None:
    assert build(CREEPING).as_bytes() == build(CREEPING).as_bytes()
    other = replace(CREEPING, trend_id="creeping:salsa-party-web-server:2.000")
    assert build(other)["Message-ID"] != build(CREEPING)["Message-ID"]


def test_a_sender_without_a_domain_gets_a_safe_fallback() -> None:
    msg = build_early_message(CREEPING, sender="sentinel", recipients=TO)
    assert msg["Message-ID"].endswith("@sentinel.invalid>")


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (CREEPING, "creeping"),
        (DISK, "disk"),
        (SLOWER, "slower"),
        (STEAL, "steal"),
        (SELF, "self"),
        (OOM, "oom"),
        (TrendEnded(warning=DISK, at=AT, reason="x"), "resolved"),
    ],
)
def test_each_event_has_a_kind_for_the_email_counter(event: object, kind: str) -> None:
    assert early_message_kind(event) == kind  # type: ignore[arg-type]


@given(name=st.text(min_size=1, max_size=150), reason=st.text(max_size=200))
def test_headers_never_carry_line_breaks_or_control_characters(name: str, reason: str) -> None:
    started = replace(CREEPING, subject=name, trend_id=f"creeping:{name}:1.0")
    for event in (started, TrendEnded(warning=started, at=AT, reason=reason)):
        msg = build(event)
        raw = msg.as_bytes()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        subject = str(parsed["Subject"])
        assert not any(ord(c) < 32 or ord(c) == 127 for c in subject)
        assert parsed["Message-ID"] == msg["Message-ID"]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (48 * MIB, "48 MiB"), (GIB, "1 GiB")],
)
def test_sizes_read_like_a_person_writes_them(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_times_rates_and_latencies_read_like_a_person_writes_them() -> None:
    assert format_approx(12) == "12 seconds"
    assert format_approx(60) == "60 seconds"
    assert format_approx(3600) == "60 minutes"
    assert format_approx(5 * 3600) == "5 hours"
    assert format_approx(3 * DAY) == "3 days"
    assert format_approx(1.4 * 3600) == "84 minutes"
    assert format_rate(48 * MIB / DAY) == "+48 MiB/day"
    assert format_latency(0.82) == "820 ms"
    assert format_latency(2.5) == "2.50 s"
    assert format_latency(12.34) == "12.3 s"


def test_early_emails_fit_78_columns_and_use_the_display_time_zone() -> None:
    import zoneinfo

    for event in (CREEPING, DISK, SLOWER, STEAL, SELF, OOM):
        msg = build_early_message(event, sender=SENDER, recipients=TO)
        assert all(len(line) <= 78 for line in body(msg).split("\n")), event
    zurich = build_early_message(
        OOM, sender=SENDER, recipients=TO, tz=zoneinfo.ZoneInfo("Europe/Zurich")
    )
    assert "2023-01-06 19:15:00 +01:00 (CET)" in body(zurich)
