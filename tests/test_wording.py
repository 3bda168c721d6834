"""What a person reads: failure words (reason first), times with their offset, 78 columns."""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.notify.wording import (
    MAX_WORDS,
    TEXT_WIDTH,
    failure_words,
    fmt_latency,
    fmt_time,
    wrap_fields,
    wrap_lines,
)
from sentinel.probes.result import REASONS

PROBES = Path(__file__).resolve().parents[1] / "src" / "sentinel" / "probes"
# Every way a probe module names a reason: ConnectError("dns", ...), self._fail("tls", ...),
# _failure("error", ...), _VerdictError("redirects", ...), result("timeout", ...), reason = "slow".
_REASON_LITERAL_RE = re.compile(
    r"""(?:ConnectError|_fail|_failure|_VerdictError|ProbeResult\.failure|\bresult)\(\s*"([a-z_]+)"|"""
    r"""\breason(?:,\s*message)?\s*=\s*"([a-z_]+)\""""
)


def probe_reason_literals() -> set[str]:
    found: set[str] = set()
    for path in PROBES.glob("*.py"):
        for match in _REASON_LITERAL_RE.finditer(path.read_text()):
            found.add(match.group(1) or match.group(2))
    return found


def test_every_reason_the_probes_give_has_words() -> None:
    literals = probe_reason_literals()
    assert {"timeout", "connect_refused", "status", "tls", "dns"} <= literals  # the scan works
    assert literals <= set(REASONS), literals - set(REASONS)
    # every code the probes give has words of its own, not the fallback for an unknown code
    assert all(failure_words(r, "") != r.replace("_", " ") for r in REASONS)
    for reason in REASONS:
        words = failure_words(reason, "")
        if reason not in ("ok",):
            assert words != reason or " " in words, reason  # words, not the code


@pytest.mark.parametrize(
    ("reason", "detail", "status", "words"),
    [
        ("status", "HTTP 404 Not Found (expected 200)", 404, "HTTP 404 (expected 200)"),
        ("status", "HTTP 500 Internal Server Error (expected 2xx)", 500, "HTTP 500 (expected 2xx)"),
        ("connect_refused", "connection refused by 127.0.0.1:8080", 0, "connection refused"),
        ("connect_reset", "connection reset by the server", 0, "connection reset"),
        ("timeout", "no response within 10s", 0, "no answer within 10s"),
        ("timeout", "no connection within 2.5s", 0, "no connection within 2.5s"),
        ("timeout", "no TLS handshake within 10s", 0, "no TLS handshake within 10s"),
        ("timeout", "cannot resolve db.lan within 5s", 0, "no DNS answer within 5s"),
        ("timeout", "no connection to db.lan:5432 within 5s", 0, "no connection within 5s"),
        (
            "timeout",
            "body not complete within 10s",
            200,
            "answer cut short: body not complete within 10s",
        ),
        (
            "connect",
            "cannot connect to [::1]:81: Network is unreachable",
            0,
            "cannot connect (network is unreachable)",
        ),
        ("connect", "connection timed out", 0, "cannot connect (connection timed out)"),
        (
            "dns",
            "cannot resolve nope.invalid: Name or service not known",
            0,
            "DNS lookup failed (name or service not known)",
        ),
        ("dns", "cannot resolve x.example: no addresses", 0, "DNS: the name has no address"),
        (
            "tls",
            "certificate not accepted: certificate has expired",
            0,
            "TLS certificate not accepted (certificate has expired)",
        ),
        ("tls", "TLS handshake with x:443 failed", 0, "TLS handshake failed"),
        (
            "body",
            "body does not contain 'Social dance'",
            200,
            "the expected text is missing from the page",
        ),
        ("body", "body does not match /^ok$/", 200, "the page does not match the expected pattern"),
        ("slow", "response took 3.20s (limit 3s)", 200, "too slow: 3.20s (limit 3s)"),
        ("protocol", "malformed response: bad status code 999", 0, "malformed HTTP answer"),
        ("redirects", "too many redirects (limit 20)", 301, "too many redirects (limit 20)"),
        ("error", "invalid URL 'x'", 0, "the check itself failed (invalid URL 'x')"),
        ("new_reason", "something", 0, "new reason (something)"),
    ],
)
def test_failure_words_put_the_reason_first_in_words(
    reason: str, detail: str, status: int, words: str
) -> None:
    assert failure_words(reason, detail, status=status) == words


def _clean(text: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in text)


@settings(max_examples=300, deadline=None)
@given(
    reason=st.sampled_from(sorted(REASONS)) | st.text(max_size=80),
    detail=st.text(max_size=600) | st.sampled_from(["within 10s", "HTTP 999 (expected (x))"]),
    status=st.integers(min_value=-5, max_value=100_000),
)
def test_any_reason_and_detail_give_one_short_clean_line(
    reason: str, detail: str, status: int
) -> None:
    words = failure_words(reason, detail, status=status)
    assert words
    assert len(words) <= MAX_WORDS
    assert "\n" not in words and "\r" not in words
    assert _clean(words)
    subject = f"[sentinel] DOWN: {'s' * 100} — {words}"
    assert len(subject) <= 220


def test_times_carry_their_offset_in_the_display_zone() -> None:
    winter = datetime(2026, 11, 26, 23, 10, 5, tzinfo=UTC).timestamp()
    summer = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    zurich = zoneinfo.ZoneInfo("Europe/Zurich")
    assert fmt_time(winter) == "2026-11-26 23:10:05 UTC"
    assert fmt_time(winter, zurich) == "2026-11-27 00:10:05 +01:00 (CET)"
    assert fmt_time(summer, zurich) == "2026-07-01 14:00:00 +02:00 (CEST)"
    assert fmt_time(summer, zoneinfo.ZoneInfo("Asia/Kolkata")) == "2026-07-01 17:30:00 +05:30 (IST)"
    assert fmt_time(float("nan")) == "1970-01-01 00:00:00 UTC"


def test_a_missing_latency_is_a_dash_never_zero() -> None:
    assert fmt_latency(None) == "—"
    assert fmt_latency(float("nan")) == "—"
    assert fmt_latency(0.0423) == "42 ms"
    assert fmt_latency(0.0002) == "< 1 ms"
    assert fmt_latency(1.25) == "1.25 s"
    assert fmt_latency(12.4) == "12 s"


def test_a_long_url_goes_on_its_own_lines_and_a_signature_keeps_its_space() -> None:
    url = "https://example.org/" + "a" * 150
    lines = wrap_fields([("Site", "blog"), ("URL", url), ("Failure", "word " * 40)])
    assert all(len(line) <= TEXT_WIDTH for line in lines)
    assert lines[1] == "URL:"
    assert "".join(line.strip() for line in lines[2:5]) == url
    assert lines[5].startswith("Failure:")
    assert wrap_lines(["-- "]) == ["-- "]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400)),
    fields=st.lists(st.tuples(st.text(min_size=1, max_size=40), st.text(max_size=400)), max_size=6),
)
def test_every_wrapped_line_fits_78_columns(
    lines: list[str], fields: list[tuple[str, str]]
) -> None:
    for line in [*wrap_lines(lines), *wrap_fields(fields)]:
        assert len(line) <= TEXT_WIDTH, line
