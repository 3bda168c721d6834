"""What a person reads in an alert: a probe's reason code and detail turned into words, times in
the display time zone with their offset, and text wrapped to 78 columns. Pure: no clock, no I/O.

`failure_words("timeout", "no response within 10s")` -> "no answer within 10s": the reason first,
in words, short enough for a subject read on a phone. The codes themselves (`timeout`,
`connect_refused`, ...) stay machine-readable in headers (X-Sentinel-Reason), metrics and logs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo

from sentinel.sanitize import one_line

__all__ = [
    "MAX_WORDS",
    "TEXT_WIDTH",
    "failure_words",
    "fmt_clock",
    "fmt_latency",
    "fmt_time",
    "wrap_fields",
    "wrap_lines",
]

MAX_WORDS = 90  # characters of failure words (a subject stays readable on a phone)
TEXT_WIDTH = 78  # RFC 5322's recommended line length: the text part never goes beyond it
_DETAIL = 48  # characters of a server's or the OS's own words inside the failure words
_MIN_TS = 0.0
_MAX_TS = 253402300799.0  # 9999-12-31 23:59:59 UTC

_WITHIN_RE = re.compile(r"within (\d+(?:\.\d+)?)s\b")
_EXPECTED_RE = re.compile(r"\(expected ([^()]{1,60})\)")
_TOOK_RE = re.compile(r"took (\d+(?:\.\d+)?)s \(limit (\d+(?:\.\d+)?)s\)")


def _seconds(detail: str) -> str:
    """'within 10s' -> ' within 10s'; '' when the detail names no time."""
    match = _WITHIN_RE.search(detail)
    return f" within {match.group(1)}s" if match else ""


def _tail(detail: str) -> str:
    """The OS's or library's own words at the end of a detail ('cannot connect to x:1: Network
    is unreachable' -> 'network is unreachable'), shortened."""
    text = one_line(detail, 500)
    tail = text.rsplit(": ", 1)[-1].strip()
    if not tail:
        return ""
    tail = tail[0].lower() + tail[1:] if tail[:2] != tail[:2].upper() else tail
    return one_line(tail, _DETAIL)


def _with(words: str, detail: str) -> str:
    return f"{words} ({detail})" if detail else words


def _timeout_words(detail: str) -> str:
    within = _seconds(detail)
    low = detail.lower()
    if low.startswith("cannot resolve"):
        return f"no DNS answer{within}"
    if low.startswith("no tls"):
        return f"no TLS handshake{within}"
    if low.startswith("body not complete"):
        return f"answer cut short: body not complete{within}"
    if low.startswith("no connection"):
        return f"no connection{within}"
    return f"no answer{within}"


def _status_words(detail: str, status: int) -> str:
    expected = _EXPECTED_RE.search(detail)
    match = re.search(r"HTTP (\d{3})\b", detail)  # the event's own words first
    if match:
        status = int(match.group(1))
    shown = f"HTTP {status}" if 100 <= status <= 999 else "unexpected HTTP status"
    return f"{shown} (expected {expected.group(1)})" if expected else shown


def _words(reason: str, detail: str, status: int) -> str:
    low = detail.lower()
    if reason == "ok":
        return "up"
    if reason == "timeout":
        return _timeout_words(detail)
    if reason == "connect_refused":
        return "connection refused"
    if reason == "connect_reset":
        return "connection reset"
    if reason == "connect":
        if "timed out" in low:
            return "cannot connect (connection timed out)"
        return _with("cannot connect", _tail(detail))
    if reason == "dns":
        if low.endswith("no addresses"):
            return "DNS: the name has no address"
        return _with("DNS lookup failed", _tail(detail))
    if reason == "tls":
        if low.startswith("certificate not accepted"):
            return _with("TLS certificate not accepted", _tail(detail))
        return _with("TLS handshake failed", _tail(detail) if ": " in detail else "")
    if reason == "status":
        return _status_words(detail, status)
    if reason == "body":
        if "does not match" in low:
            return "the page does not match the expected pattern"
        return "the expected text is missing from the page"
    if reason == "body_too_large":
        return "the expected text is not in the page's first bytes read"
    if reason == "slow":
        took = _TOOK_RE.search(detail)
        if took:
            return f"too slow: {took.group(1)}s (limit {took.group(2)}s)"
        return "too slow"
    if reason == "protocol":
        return "malformed HTTP answer"
    if reason == "redirects":
        limit = re.search(r"limit (\d+)", detail)
        return f"too many redirects (limit {limit.group(1)})" if limit else "too many redirects"
    if reason == "error":
        return _with("the check itself failed", _tail(detail))
    # A reason this module does not know (a newer probe): its code and detail, cleaned.
    code = one_line(reason, 40) or "failed"
    return _with(code.replace("_", " "), one_line(detail, _DETAIL))


def failure_words(reason: str, detail: str = "", *, status: int = 0) -> str:
    """A probe's failure in words, reason first: one line, no control characters, at most
    MAX_WORDS characters, never empty. `detail` is the probe's message (from outside: cleaned
    here); `status` the HTTP status when there was one."""
    words = one_line(_words(reason, one_line(detail, 500), status), MAX_WORDS)
    return words or "failed"


# ---------------------------------------------------------------- numbers and times


def _finite(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def fmt_latency(seconds: float | None) -> str:
    """'42 ms', '1.25 s', '12 s'; '—' when there is no time (a failed probe, an unknown phase)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 0.0005:
        return "< 1 ms"  # (loopback and LAN connects: "0 ms" would read as "nothing happened")
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s"


def fmt_clock(ts: float, tz: tzinfo | None = None) -> str:
    """A table's time: '2026-11-26 23:10:05' in UTC (the table's heading says UTC), else with
    the offset: '2026-11-27 00:10:05 +01:00'."""
    text = fmt_time(ts, tz)
    if text.endswith(" UTC"):
        return text[:-4]
    return text.split(" (", 1)[0]


def fmt_time(ts: float, tz: tzinfo | None = None) -> str:
    """'2026-11-26 23:10:05 UTC', or in `tz` with its offset and abbreviation:
    '2026-11-27 00:10:05 +01:00 (CET)'. Out-of-range times are clamped, never raise."""
    when = datetime.fromtimestamp(min(max(_finite(ts), _MIN_TS), _MAX_TS), tz=UTC)
    if tz is None or tz is UTC:
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        local = when.astimezone(tz)
    except (OverflowError, ValueError):
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    offset = local.strftime("%z")
    shown = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else "+00:00"
    name = local.tzname() or ""
    suffix = f" ({name})" if name and not name.startswith(("+", "-")) else ""
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {shown}{suffix}"


# ---------------------------------------------------------------- 78 columns

_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)


def _hard_split(word: str, width: int) -> list[str]:
    return [word[i : i + width] for i in range(0, len(word), width)] or [""]


def _wrap_one(line: str, width: int, indent: str) -> list[str]:
    """One line wrapped at spaces; a word longer than a line (a URL, a hostile name) is cut into
    pieces of a whole line each, on lines of their own. Continuations start with `indent`."""
    if len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip(" "))]
    words = line[len(lead) :].split(" ")
    out: list[str] = []
    current = lead
    fresh = True  # nothing but the line's own indentation in `current` yet
    for word in words:
        room = width - len(current) - (0 if fresh else 1)
        if len(word) <= room:
            current = current + word if fresh else f"{current} {word}"
            fresh = False
            continue
        if not fresh:
            out.append(current)
            current, fresh = indent, True
        if len(current) + len(word) <= width:
            current, fresh = current + word, False
            continue
        # Too long for any line: a URL gets lines of its own, whole widths each.
        pieces = _hard_split(word, width - len(indent))
        out.extend(indent + piece for piece in pieces[:-1])
        current, fresh = indent + pieces[-1], False
    out.append(current)
    return [line.rstrip() if line.strip() else "" for line in out]


def wrap_lines(lines: Iterable[str], width: int = TEXT_WIDTH) -> list[str]:
    """Every line at most `width` columns: wrapped at spaces, with the line's own indentation
    kept on its continuation lines. Lines already short enough are left alone."""
    out: list[str] = []
    for line in lines:
        for piece in line.split("\n"):
            if len(piece) <= width:
                out.append(piece)  # (kept as is: "-- " keeps the space of a signature line)
                continue
            lead = len(piece) - len(piece.lstrip(" "))
            if piece[lead : lead + 2] in ("- ", "* "):
                lead += 2  # a list item's continuation lines hang under its text
            out.extend(_wrap_one(piece.rstrip(), width, " " * min(lead, width // 2)))
    return out


def wrap_fields(fields: Sequence[tuple[str, str]], width: int = TEXT_WIDTH) -> list[str]:
    """'Name:   value' lines aligned on the longest name, values wrapped under themselves. A URL
    value too long for its column goes whole on the next line (easier to copy)."""
    if not fields:
        return []
    column = min(max(len(name) for name, _ in fields) + 2, 24)
    out: list[str] = []
    for name, value in fields:
        head = f"{name + ':':<{column}}"
        if len(head) > column:  # a long name: the value starts on the next line
            out.append(head.rstrip())
            head = " " * column
        if _URL_RE.match(value) and len(head) + len(value) > width:
            out.append(head.rstrip())
            out.extend(wrap_lines(["  " + value], width))
            continue
        out.extend(_wrap_one(head + value, width, " " * column))
    return out
