"""Heartbeat emails as the recipient's mail program reads them: subjects, threading, output."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import EmailConfig
from sentinel.heartbeats.messages import build_heartbeat_message, clean_output
from sentinel.heartbeats.state import Failed, Late, Recovered

EMAIL = EmailConfig(sender="sentinel <sentinel@example.org>", recipients=("owner@example.org",))


def at(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> float:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC).timestamp()


def received(msg: EmailMessage) -> EmailMessage:
    """The message as it arrives: its bytes on the wire, parsed again."""
    data = msg.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


LATE = Late(
    name="nightly-backup",
    at=at(4, 0, 1),
    incident_id="abc",
    last_ping=at(3, 0, 5, day=1),
    expected_at=at(3),
    started_at=None,
)


def test_late_subject_says_since_when_and_by_when() -> None:
    msg = received(build_heartbeat_message(LATE, email=EMAIL))
    assert msg["Subject"] == (
        "[sentinel] LATE: nightly-backup — no ping since 2026-12-01 03:00:05 UTC "
        "(expected by 2026-12-02 03:00:00 UTC)"
    )
    assert msg["X-Sentinel-Kind"] == "late"
    assert msg["X-Sentinel-Heartbeat"] == "nightly-backup"
    assert msg["In-Reply-To"] is None
    assert "Last ping:" in text_of(msg)


def test_late_variants_for_a_job_never_seen_and_a_run_that_did_not_end() -> None:
    never = Late("q", at(4), "1", None, at(3), None)
    assert received(build_heartbeat_message(never, email=EMAIL))["Subject"] == (
        "[sentinel] LATE: q — no ping yet (expected by 2026-12-02 03:00:00 UTC)"
    )
    stuck = Late("q", at(4), "1", at(2), at(2), at(2))
    subject = received(build_heartbeat_message(stuck, email=EMAIL))["Subject"]
    assert subject.startswith("[sentinel] LATE: q — started 2026-12-02 02:00:00 UTC, no end ping")


def test_failed_carries_the_exit_code_and_the_last_output() -> None:
    output = "backing up /srv\n\x1b[31merror:\x1b[0m disk full\r\nexit\x00 now"
    failed = Failed("nightly-backup", at(3, 5), "f1", 2, output, 300.0, opens=True)
    msg = received(build_heartbeat_message(failed, email=EMAIL))
    assert msg["Subject"] == "[sentinel] FAILED: nightly-backup — exit 2"
    body = text_of(msg)
    assert "  backing up /srv\n  error: disk full\n  exit now" in body
    assert "Run time:" in body and "5m" in body
    html_part = msg.get_body(("html",))
    assert html_part is not None and "error: disk full" in str(html_part.get_content())  # type: ignore[attr-defined]
    plain = Failed("q", at(3), "f2", None, "", None, opens=True)
    assert received(build_heartbeat_message(plain, email=EMAIL))["Subject"] == (
        "[sentinel] FAILED: q — reported a failure"
    )


def test_recovered_and_a_later_failure_reply_to_the_email_that_opened_the_incident() -> None:
    root = received(build_heartbeat_message(LATE, email=EMAIL))
    failed = Failed("nightly-backup", at(5), "abc", 1, "", None, opens=False)
    recovered = Recovered("nightly-backup", at(6, 30), "abc", since=at(4, 0, 1), was="late")
    for event in (failed, recovered):
        msg = received(build_heartbeat_message(event, email=EMAIL))
        assert msg["In-Reply-To"] == root["Message-ID"]
        assert root["Message-ID"] in msg["References"]
        assert msg["Message-ID"] != root["Message-ID"]
    msg = received(build_heartbeat_message(recovered, email=EMAIL))
    assert msg["Subject"] == "[sentinel] RECOVERED: nightly-backup after 2h 29m"
    assert msg["X-Sentinel-Kind"] == "recovered"


def test_the_same_event_gives_the_same_bytes() -> None:
    one = build_heartbeat_message(LATE, email=EMAIL).as_bytes(policy=email.policy.SMTP)
    two = build_heartbeat_message(LATE, email=EMAIL).as_bytes(policy=email.policy.SMTP)
    assert one == two


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_any_output_is_one_safe_text(output: str) -> None:
    cleaned = clean_output(output)
    assert "\r" not in cleaned and "\x1b" not in cleaned and "\x00" not in cleaned
    failed = Failed("job", at(3), "x", 1, output, None, opens=True)
    msg = received(build_heartbeat_message(failed, email=EMAIL))
    assert msg["Subject"] == "[sentinel] FAILED: job — exit 1"


def test_times_are_in_the_display_time_zone_and_lines_fit_78_columns() -> None:
    import zoneinfo

    late = Late(
        name="nightly-backup-" + "x" * 85,
        at=at(4, 0, 1),
        incident_id="abc",
        last_ping=at(3, 0, 5, day=1),
        expected_at=at(3),
        started_at=None,
    )
    msg = received(
        build_heartbeat_message(late, email=EMAIL, tz=zoneinfo.ZoneInfo("Europe/Zurich"))
    )
    assert "(expected by 2026-12-02 04:00:00 +01:00 (CET))" in str(msg["Subject"])
    body = text_of(msg)
    assert "2026-12-01 04:00:05 +01:00 (CET)" in body
    assert all(len(line) <= 78 for line in body.split("\n"))
