"""Alert emails: subjects, bodies, threading headers and header safety (pure, no I/O)."""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sentinel.config import EmailConfig
from sentinel.monitor import (
    CertExpiring,
    Event,
    Recovered,
    ResultSummary,
    StillDown,
    WentDown,
)
from sentinel.notify.message import (
    MessageContext,
    build_message,
    build_test_message,
    certificate_message_id,
    human_duration,
    incident_message_id,
    message_domain,
    message_kind,
    site_page_url,
)
from sentinel.probes.result import REASONS

CFG = EmailConfig(
    sender="sentinel <sentinel@example.org>",
    recipients=("owner@example.org", "ops@example.net"),
)
URL = "https://blog.example.org/"
T0 = datetime(2026, 11, 26, 23, 10, 5, tzinfo=UTC).timestamp()
INCIDENT = f"{T0:.3f}"

RECENT = (
    ResultSummary(at=T0, ok=False, status=500, total=0.1234, reason="status", message="HTTP 500"),
    ResultSummary(
        at=T0 + 60, ok=False, status=0, total=10.0, reason="timeout", message="no answer in 10s"
    ),
    ResultSummary(
        at=T0 + 120, ok=False, status=503, total=0.05, reason="status", message="HTTP 503"
    ),
)


def went_down(**overrides: object) -> WentDown:
    values: dict[str, object] = {
        "site": "blog",
        "incident_id": INCIDENT,
        "since": T0,
        "at": T0 + 120,
        "reason": "status",
        "message": "HTTP 500",
        "recent": RECENT,
    }
    values.update(overrides)
    return WentDown(**values)  # type: ignore[arg-type]


def still_down(reminder: int, at: float) -> StillDown:
    return StillDown(
        site="blog",
        incident_id=INCIDENT,
        since=T0,
        at=at,
        reason="timeout",
        message="no answer in 10s",
        reminder=reminder,
        recent=RECENT,
    )


def recovered(until: float = T0 + 192) -> Recovered:
    ok = ResultSummary(at=until, ok=True, status=200, total=0.042, reason="ok", message="")
    return Recovered(
        site="blog",
        incident_id=INCIDENT,
        since=T0,
        until=until,
        at=until + 1,
        recent=(*RECENT, ok),
    )


def cert(days: float = 9.5) -> CertExpiring:
    return CertExpiring(site="blog", expires_at=T0 + days * 86400, at=T0)


def build(event: Event) -> EmailMessage:
    return build_message(event, email=CFG, target=URL)


def text_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def html_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# ---------------------------------------------------------------- subjects


def test_down_subject_names_the_site_and_the_reason_in_words() -> None:
    msg = build(went_down(message="HTTP 404 Not Found (expected 200)"))
    assert msg["Subject"] == "[sentinel] DOWN: blog — HTTP 404 (expected 200)"
    assert msg["X-Sentinel-Reason"] == "status"  # the code stays machine-readable


def test_down_subject_without_a_message_gives_the_reason_in_words() -> None:
    msg = build(went_down(reason="connect_refused", message=""))
    assert msg["Subject"] == "[sentinel] DOWN: blog — connection refused"
    assert msg["X-Sentinel-Reason"] == "connect_refused"


def test_still_down_subject_gives_how_long_it_has_been_down() -> None:
    msg = build(still_down(1, at=T0 + 4 * 3600 + 5 * 60 + 7))
    assert msg["Subject"] == "[sentinel] STILL DOWN: blog for 4h 5m"


def test_recovered_subject_gives_the_total_downtime() -> None:
    assert build(recovered())["Subject"] == "[sentinel] RECOVERED: blog after 3m 12s"


def test_certificate_subject_gives_whole_days_left() -> None:
    assert build(cert(9.5))["Subject"] == "[sentinel] CERTIFICATE: blog expires in 9 days"


def test_test_email_has_its_own_subject_and_kind() -> None:
    msg = build_test_message(email=CFG, now=T0)
    assert msg["Subject"] == "[sentinel] test email"
    assert msg["X-Sentinel-Kind"] == "test"
    assert msg["To"] == "owner@example.org, ops@example.net"
    assert msg["Message-ID"].endswith("@example.org>")
    assert "2026-11-26 23:10:05 UTC" in msg.get_content()


def test_message_kind_is_the_metric_label_of_each_event() -> None:
    assert [message_kind(e) for e in (went_down(), still_down(1, T0), recovered(), cert())] == [
        "down",
        "still_down",
        "recovered",
        "certificate",
    ]
    for event in (went_down(), still_down(1, T0), recovered(), cert()):
        assert build(event)["X-Sentinel-Kind"] == message_kind(event)
        assert build(event)["X-Sentinel-Site"] == "blog"


# ---------------------------------------------------------------- bodies


def test_down_body_gives_site_url_failure_utc_times_and_recent_results() -> None:
    body = text_body(build(went_down()))
    assert "blog is DOWN: HTTP 500." in body
    assert URL in body
    assert "HTTP 500 (status)" in body
    assert "2026-11-26 23:10:05 UTC" in body  # since (first failed probe)
    assert "2026-11-26 23:12:05 UTC" in body  # detected
    rows = [line for line in body.splitlines() if line.startswith("  2026-")]
    assert len(rows) == 3
    # A failed probe's latency is "—", never a made-up number.
    assert re.search(r"23:10:05\s+FAILED\s+HTTP 500\s+—\s+HTTP 500$", rows[0])
    assert re.search(r"23:11:05\s+FAILED\s+—\s+—\s+no answer$", rows[1])


def test_recovery_body_gives_the_total_downtime_and_the_good_probe() -> None:
    body = text_body(build(recovered()))
    assert "blog is back UP after 3m 12s of downtime." in body
    assert re.search(r"Total downtime:\s+3m 12s", body)
    assert "2026-11-26 23:13:17 UTC (first good probe)" in body
    assert re.search(r"23:13:17\s+ok\s+HTTP 200\s+42 ms", body)


def test_certificate_body_gives_the_expiry_date() -> None:
    body = text_body(build(cert(9.5)))
    assert "expires in 9 days" in body
    assert "2026-12-06 11:10:05 UTC" in body
    assert URL in body


def test_tcp_sites_show_their_target_rather_than_a_url() -> None:
    body = text_body(build_message(went_down(), email=CFG, target="mail.example.org:587"))
    assert re.search(r"Target:\s+mail\.example\.org:587", body)


def test_html_alternative_escapes_remote_text() -> None:
    msg = build(went_down(message="<script>alert(1)</script> & co"))
    assert msg.get_content_type() == "multipart/alternative"
    page = html_body(msg)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page


def test_non_ascii_text_survives_the_round_trip() -> None:
    msg = build(
        went_down(site="café", reason="connect", message="x:1: Dienst nicht verfügbar — 服务不可用")
    )
    parsed = reparse(msg)
    assert (
        parsed["Subject"]
        == "[sentinel] DOWN: café — cannot connect (dienst nicht verfügbar — 服务不可用)"
    )
    assert parsed["X-Sentinel-Site"] == "café"
    assert "服务不可用" in text_body(parsed)
    assert msg.as_bytes().isascii()  # encoded words + quoted-printable: 7-bit clean on the wire


# ---------------------------------------------------------------- headers


def test_date_header_is_the_event_time_in_utc() -> None:
    msg = build(went_down())
    assert msg["Date"] == "Thu, 26 Nov 2026 23:12:05 +0000"
    assert msg["Date"].datetime == datetime(2026, 11, 26, 23, 12, 5, tzinfo=UTC)


def test_from_and_to_come_from_the_email_config() -> None:
    msg = reparse(build(went_down()))
    assert msg["From"] == "sentinel <sentinel@example.org>"
    assert [a.addr_spec for a in msg["To"].addresses] == ["owner@example.org", "ops@example.net"]
    assert msg["Auto-Submitted"] == "auto-generated"


def test_incident_emails_thread_to_the_down_email() -> None:
    down = build(went_down())
    reminder_1 = build(still_down(1, at=T0 + 4 * 3600))
    reminder_2 = build(still_down(2, at=T0 + 8 * 3600))
    up = build(recovered())

    root = down["Message-ID"]
    assert root == incident_message_id("blog", INCIDENT, domain="example.org")
    assert down["In-Reply-To"] is None
    assert down["References"] is None
    ids = [m["Message-ID"] for m in (down, reminder_1, reminder_2, up)]
    assert len(set(ids)) == 4
    for reply in (reminder_1, reminder_2, up):
        assert reply["In-Reply-To"] == root
        assert reply["References"] == root
        assert re.fullmatch(r"<[A-Za-z0-9._-]+@example\.org>", reply["Message-ID"])


def test_message_ids_depend_only_on_the_event_so_a_retry_is_identical() -> None:
    assert build(went_down()).as_bytes() == build(went_down()).as_bytes()
    assert build(recovered()).as_bytes() == build(recovered()).as_bytes()
    # The DOWN's ID depends on site and incident, not on the detection time or the reason.
    later = build(went_down(at=T0 + 999, reason="timeout", message="slow"))
    assert later["Message-ID"] == build(went_down())["Message-ID"]


def test_different_sites_and_incidents_get_different_threads() -> None:
    ids = {
        build(went_down())["Message-ID"],
        build(went_down(site="shop"))["Message-ID"],
        build(went_down(incident_id=f"{T0 + 3600:.3f}"))["Message-ID"],
    }
    assert len(ids) == 3


def test_certificate_warnings_thread_per_certificate() -> None:
    first = build(cert(10))
    again = build(CertExpiring(site="blog", expires_at=T0 + 10 * 86400, at=T0 + 3600))
    renewed = build(cert(12))
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == certificate_message_id(
        "blog", T0 + 10 * 86400, domain="example.org"
    )
    assert renewed["Message-ID"] != first["Message-ID"]


def test_message_id_domain_is_the_senders_domain_without_any_lookup() -> None:
    assert message_domain("Alerts <alerts@Mail.Example.ORG>") == "mail.example.org"
    assert message_domain("a@bücher.example") == "xn--bcher-kva.example"
    assert message_domain("no-at-sign") == "sentinel.invalid"
    cfg = EmailConfig(sender="x@ops.example.net", recipients=("a@example.org",))
    assert build_message(went_down(), email=cfg, target=URL)["Message-ID"].endswith(
        "@ops.example.net>"
    )


def test_remote_text_cannot_inject_headers_or_break_lines() -> None:
    hostile = "oops\r\nBcc: victim@example.com\r\n\r\n<b>body</b>\x00\x1b[31m\u2028\u0085end"
    msg = build(went_down(reason="status\nX-Evil: 1", message=hostile))
    raw = msg.as_bytes()
    parsed = reparse(msg)
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None
    subject = parsed["Subject"]
    assert subject.startswith("[sentinel] DOWN: blog — status X-Evil: 1 (oops Bcc:")
    assert not any(ch in subject for ch in "\r\n\x00\x1b\u2028\u0085")
    assert_headers_are_well_formed(raw)


def test_overlong_remote_text_is_capped_in_the_subject() -> None:
    msg = build(went_down(reason="connect", message="cannot connect to h: " + "x" * 5000))
    subject = reparse(msg)["Subject"]
    assert len(subject) < 200
    assert subject.endswith("…)")
    assert_headers_are_well_formed(msg.as_bytes())


# ---------------------------------------------------------------- human_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (45, "45s"),
        (59.99, "59s"),
        (60, "1m"),
        (192, "3m 12s"),
        (3600, "1h"),
        (2 * 3600 + 5 * 60 + 59, "2h 5m"),
        (3 * 86400 + 4 * 3600 + 5, "3d 4h"),
        (14 * 86400, "14d"),
        (-5, "0s"),
        (float("nan"), "0s"),
    ],
)
def test_human_duration_gives_the_two_largest_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _parse_human(text: str) -> tuple[int, int]:
    """'2h 5m' -> (7500, 60): the value and the size of its smallest shown unit."""
    total, smallest = 0, 86400
    for amount, unit in re.findall(r"(\d+)([dhms])", text):
        total += int(amount) * _UNITS[unit]
        smallest = min(smallest, _UNITS[unit])
    return total, smallest


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=10 * 365 * 86400), st.floats(min_value=0, max_value=1e7))
def test_human_duration_is_never_empty_and_never_runs_backwards(a: float, delta: float) -> None:
    text = human_duration(a)
    assert re.fullmatch(r"\d+[dhms]( \d+[dhms])?", text)
    value, smallest = _parse_human(text)
    # Truncated, never rounded up, and less than one of the smallest shown units is lost.
    assert value <= a < value + smallest
    assert _parse_human(human_duration(a + delta))[0] >= value


# ---------------------------------------------------------------- header safety property

_HEADER_LINE_RE = re.compile(rb"^(?:[!-9;-~]+:[ \t]?.*|[ \t].*)$")

EXPECTED_HEADERS = {
    "Subject",
    "From",
    "To",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Sentinel-Kind",
    "X-Sentinel-Site",
    "X-Sentinel-Reason",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
}


def assert_headers_are_well_formed(raw: bytes) -> None:
    """Every line of the header block is a new field or a folded continuation; no bare CR/LF."""
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no end of headers"
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"\r" not in head.replace(b"\r\n", b"")
    names = set()
    for line in head.split(b"\r\n"):
        assert _HEADER_LINE_RE.match(line), line
        assert len(line) <= 998
        if not line[:1].isspace():
            names.add(line.split(b":", 1)[0].decode("ascii"))
    assert names <= EXPECTED_HEADERS, names - EXPECTED_HEADERS


remote_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=300
) | st.sampled_from(
    [
        "=?utf-8?q?hi?=",
        "a\r\nBcc: x@y",
        "\r\n\r\n",
        " ",
        "x" * 2000,
        "é" * 500,
        "\udcff",
        "<>&\"'",
    ]
)


@settings(max_examples=100, deadline=None)
@given(
    reason=remote_text,
    message=remote_text,
    kind=st.sampled_from(["down", "still_down", "recovered"]),
    site=st.text(
        # What the config accepts, minus the invisible characters that are dropped from headers.
        alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp")),
        min_size=1,
        max_size=100,
    ).filter(str.strip),
)
@example(reason="", message="", kind="down", site="0000¡¡¡¡¡¡𐀀𐀀𐀀")  # lost " " before "—"
@example(reason="=?utf-8?q?hi?=", message="x", kind="down", site="=?utf-8?q?s?=")
def test_any_remote_text_gives_well_formed_headers_that_round_trip(
    reason: str, message: str, kind: str, site: str
) -> None:
    recent = (ResultSummary(at=T0, ok=False, status=0, total=1.0, reason=reason, message=message),)
    clean_site = " ".join(site.split())
    event: Event
    if kind == "down":
        event = WentDown(site, INCIDENT, T0, T0 + 60, reason, message, recent)
        subject_start = f"[sentinel] DOWN: {clean_site} — "
    elif kind == "still_down":
        event = StillDown(site, INCIDENT, T0, T0 + 3600, reason, message, 3, recent)
        subject_start = f"[sentinel] STILL DOWN: {clean_site} for 1h"
    else:
        event = Recovered(site, INCIDENT, T0, T0 + 100, T0 + 101, recent)
        subject_start = f"[sentinel] RECOVERED: {clean_site} after 1m 40s"
    msg = build_message(event, email=CFG, target=URL)
    assert msg["Subject"].startswith(subject_start)
    assert msg["X-Sentinel-Site"] == clean_site
    # As stored (msg.as_bytes), as aiosmtplib puts it on the wire (7bit, or SMTPUTF8), and as
    # sent again after a trip through the outbox (stored bytes parsed with policy.default).
    stored = msg.as_bytes(policy=email.policy.SMTP)
    reloaded = email.message_from_bytes(stored, policy=email.policy.default)
    assert isinstance(reloaded, EmailMessage)
    for raw in (
        stored,
        flatten_message(msg, utf8=False, cte_type="7bit"),
        flatten_message(msg, utf8=True, cte_type="8bit"),
        flatten_message(reloaded, utf8=False, cte_type="7bit"),
    ):
        assert_headers_are_well_formed(raw)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        assert not parsed.defects
        assert parsed["Subject"] == msg["Subject"]
        assert parsed["Message-ID"] == msg["Message-ID"]
        assert parsed["X-Sentinel-Site"] == clean_site
        # (the headline is wrapped to 78 columns: compare without the line breaks)
        assert "".join(text_body(parsed).split()).startswith("".join(clean_site.split()))


# ---------------------------------------------------------------- read on a phone at night


def test_the_html_part_is_a_phone_sized_page_with_the_state_as_word_and_shape() -> None:
    page = html_body(build(went_down()))
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<html lang="en">' in page
    assert "overflow-wrap:anywhere" in page
    assert '<span class="state bad">\u25bc DOWN</span>' in page  # never colour alone
    assert f'<a href="{URL}">{URL}</a>' in page
    assert '<span class="state good">\u25b2 UP</span>' in html_body(build(recovered()))


def test_the_site_page_link_and_the_display_time_zone_come_from_the_context() -> None:
    context = MessageContext(
        tz=zoneinfo.ZoneInfo("Europe/Zurich"),
        site_page=site_page_url("https://status.example.org/", "blog & co"),
    )
    msg = build_message(went_down(), email=CFG, target=URL, context=context)
    body = text_body(msg)
    assert re.search(r"Status page:\s+https://status\.example\.org/sites/blog%20%26%20co", body)
    assert "2026-11-27 00:10:05 +01:00 (CET) (first failed probe)" in body
    assert "  2026-11-27 00:10:05 +01:00  FAILED" in body
    assert "https://status.example.org/sites/blog%20%26%20co</a>" in html_body(msg)
    assert site_page_url("", "blog") is None
    assert (
        site_page_url("https://s.example/status", "blog") == "https://s.example/status/sites/blog"
    )


def test_the_down_email_carries_the_diagnosis_and_the_local_services() -> None:
    context = MessageContext(
        summary="blog-app was OOM-killed 3 times in the last hour.",
        diagnosis=("Failed at connect: no TCP connection", "connect refused"),
        local=("blog-app (unit blog-app.service): OOM-killed 3 times in the last hour",),
    )
    down = build_message(went_down(), email=CFG, target=URL, context=context)
    body = text_body(down)
    assert body.startswith(
        "blog is DOWN: HTTP 500.\nblog-app was OOM-killed 3 times in the last hour.\n"
    )
    assert "What sentinel knows:\n  - Failed at connect: no TCP connection\n" in body
    assert "On this host:\n  - blog-app (unit blog-app.service): OOM-killed" in body
    assert "<li>Failed at connect: no TCP connection</li>" in html_body(down)
    # A reminder or a recovery does not repeat it.
    assert "What sentinel knows" not in text_body(
        build_message(recovered(), email=CFG, target=URL, context=context)
    )


@settings(max_examples=60, deadline=None)
@given(
    site=st.text(
        alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp")),
        min_size=1,
        max_size=100,
    ).filter(str.strip),
    path=st.text(alphabet="abcdefghij/%-._~", max_size=1900),
    message=remote_text,
    kind=st.sampled_from(["down", "still_down", "recovered", "certificate"]),
)
def test_every_text_line_fits_78_columns_whatever_the_names_and_urls(
    site: str, path: str, message: str, kind: str
) -> None:
    url = f"https://{'x' * 60}.example.org/{path}"
    event: Event
    if kind == "down":
        event = went_down(site=site, message=message)
    elif kind == "still_down":
        event = StillDown(site, INCIDENT, T0, T0 + 3600, "timeout", message, 1, RECENT)
    elif kind == "recovered":
        event = recovered()
    else:
        event = CertExpiring(site=site, expires_at=T0, at=T0, subject=message)
    context = MessageContext(
        site_page=site_page_url(url, site), diagnosis=(message,), local=(message * 2,)
    )
    msg = build_message(event, email=CFG, target=url, context=context)
    for line in text_body(msg).split("\n"):
        assert len(line) <= 78, line


@settings(max_examples=150, deadline=None)
@given(reason=st.sampled_from(sorted(REASONS)) | remote_text, message=remote_text)
def test_any_reason_and_detail_give_a_one_line_clean_bounded_subject(
    reason: str, message: str
) -> None:
    msg = build(went_down(reason=reason, message=message))
    subject = str(reparse(msg)["Subject"])
    assert subject.startswith("[sentinel] DOWN: blog — ")
    assert len(subject) <= 200
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in subject)
