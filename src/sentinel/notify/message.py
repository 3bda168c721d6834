"""Alert emails: monitor events in, ready-to-send `EmailMessage`s out. Pure: no clock, no I/O.

Owns the subjects promised in PRODUCT.md, the plain-text (and HTML) bodies, and the threading
headers: every email of one incident replies to the DOWN email, whose Message-ID is derived from
(site, incident_id) alone, so a restart or a retry from the outbox produces the very same IDs.
Anything that came from a remote server (probe reason/message) is scrubbed of control and line-break
characters and capped before it reaches a header.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
import html
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

from sentinel.config import EmailConfig
from sentinel.monitor import (
    CertExpiring,
    Event,
    Flapping,
    Recovered,
    ResultSummary,
    Stable,
    Status,
    StillDown,
    WentDown,
)
from sentinel.sanitize import one_line

__all__ = [
    "POLICY",
    "build_message",
    "build_test_message",
    "certificate_message_id",
    "human_duration",
    "incident_message_id",
    "message_domain",
    "message_kind",
]

# policy.SMTP = the modern (EmailMessage) policy with CRLF line endings: non-ASCII headers are
# RFC 2047-encoded and long ones folded on output.
POLICY = email.policy.SMTP

SUBJECT_PREFIX = "[sentinel]"
_MAX_SITE = 100  # the config already caps site names at 100 characters
_MAX_REASON = 40
_MAX_MESSAGE = 120  # a remote message in a subject or header
_MAX_BODY_TEXT = 500  # a remote message in the body
_FALLBACK_DOMAIN = "sentinel.invalid"
_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DOMAIN_CHARS_RE = re.compile(r"[^A-Za-z0-9.-]")
# Valid datetime range for fromtimestamp on every platform we care about.
_MIN_TS = 0.0
_MAX_TS = 253402300799.0  # 9999-12-31 23:59:59 UTC


# ---------------------------------------------------------------- text helpers


def _finite(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(min(max(_finite(ts), _MIN_TS), _MAX_TS), tz=UTC)


def fmt_time(ts: float) -> str:
    """'2026-11-26 23:10:05 UTC'."""
    return _utc(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float) -> str:
    """'45s', '3m 12s', '2h 5m', '3d 4h': the two largest non-zero units, truncated, never empty."""
    if math.isnan(seconds) or seconds < 1:
        return "0s"
    total = int(min(seconds, 1e12))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if parts or total >= size:
            amount, total = divmod(total, size)
            parts.append(f"{amount}{unit}")
            if len(parts) == 2:
                break
    # Drop a trailing zero unit: "1h" rather than "1h 0m".
    if len(parts) == 2 and parts[1][0] == "0":
        parts.pop()
    return " ".join(parts)


def _reason_text(reason: str, message: str, limit: int) -> str:
    """'status (HTTP 500)'; just the reason when there is no message."""
    short_reason = one_line(reason, _MAX_REASON) or "error"
    short_message = one_line(message, limit)
    if short_message and short_message != short_reason:
        return f"{short_reason} ({short_message})"
    return short_reason


# ---------------------------------------------------------------- RFC 2047 headers

_MAX_LINE = 78  # RFC 5322's recommended line length; also the policy's refold threshold


def _encoded_words(text: str, max_len: int, first_max_len: int) -> list[str]:
    """`text` as UTF-8 base64 encoded words of at most `max_len` characters (the first one at
    most `first_max_len`), never splitting a character: each word must decode on its own."""

    def capacity(length: int) -> int:
        return max(4, (length - len("=?utf-8?b??=")) // 4 * 3)

    max_bytes = capacity(first_max_len)
    chunks: list[bytes] = []
    chunk = b""
    for ch in text:
        data = ch.encode("utf-8")
        if chunk and len(chunk) + len(data) > max_bytes:
            chunks.append(chunk)
            chunk = b""
            max_bytes = capacity(max_len)
        chunk += data
    if chunk:
        chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks]


def _wire_header(name: str, value: str) -> str | None:
    """The header's value as it goes on the wire (folded, encoded), or None when the policy can
    fold it unaided.

    CPython's folder (3.11/3.12) separates adjacent encoded words with a space that is not part
    of either word, and RFC 2047 decoders drop such whitespace ("café — x" arrives as "café— x").
    So values with non-ASCII text (or a literal "=?" that a reader would decode) are encoded here:
    an ASCII head kept readable for filters, then encoded words that carry their own spaces, one
    per folded line (the whitespace between two encoded words is not part of the text).
    """
    first = next((i for i, ch in enumerate(value) if not ch.isascii()), len(value))
    literal = value.find("=?")
    if literal != -1:
        first = min(first, literal)
    if first == len(value):
        return None
    budget = _MAX_LINE - len(name) - 2  # room on the first line, after "Name: "
    head_end = value.rfind(" ", 0, min(first, budget)) + 1  # the head keeps its trailing space
    head, tail = value[:head_end], value[head_end:]
    word_len = min(75, budget)
    room = budget - len(head)  # what is left on the first line
    words = _encoded_words(tail, word_len, room if room >= 24 else word_len)
    lines = [head]
    for index, word in enumerate(words):
        if index > 0 or len(head) + len(word) > budget:
            lines.append(" ")
        lines[-1] += word
    if len(lines) > 1 and lines[0].endswith(" "):
        # The fold (CRLF + space) now stands for the space that ended the head.
        lines[0] = lines[0][:-1]
    return "\r\n".join(lines)


# ---------------------------------------------------------------- identifiers


def message_domain(sender: str) -> str:
    """The domain for Message-IDs: the sender address's domain, IDNA-encoded, or a safe fallback.
    Never a hostname lookup."""
    _, address = email.utils.parseaddr(sender)
    local, at, domain = address.rpartition("@")
    domain = domain.strip().strip(".").lower()
    if not at or not local or not domain:
        return _FALLBACK_DOMAIN
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = domain.encode("ascii", "replace").decode("ascii")
    domain = _DOMAIN_CHARS_RE.sub("-", domain)[:253]
    return domain or _FALLBACK_DOMAIN


def _site_token(site: str) -> str:
    return hashlib.sha256(site.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _safe_token(value: str) -> str:
    if _SAFE_TOKEN_RE.match(value):
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def incident_message_id(site: str, incident_id: str, *, domain: str) -> str:
    """The DOWN email's Message-ID, which every later email of the incident refers to."""
    return f"<down.{_site_token(site)}.{_safe_token(incident_id)}@{domain}>"


def certificate_message_id(site: str, expires_at: float, *, domain: str) -> str:
    """The thread root of the warnings about one certificate (one site, one NotAfter)."""
    return f"<cert.{_site_token(site)}.{int(_finite(expires_at))}@{domain}>"


def flapping_message_id(site: str, since: float, *, domain: str) -> str:
    """The FLAPPING email's Message-ID; its STABLE email replies to it."""
    return f"<flapping.{_site_token(site)}.{int(_finite(since))}@{domain}>"


def _event_message_id(event: Event, domain: str) -> tuple[str, str | None]:
    """(Message-ID, thread root or None when the email is the root itself)."""
    if isinstance(event, CertExpiring):
        return certificate_message_id(event.site, event.expires_at, domain=domain), None
    if isinstance(event, Flapping):
        return flapping_message_id(event.site, event.since, domain=domain), None
    if isinstance(event, Stable):
        flap_root = flapping_message_id(event.site, event.since, domain=domain)
        if event.incident_id is not None:
            # Settled DOWN: this email is the incident's root (its DOWN email was never sent).
            return incident_message_id(event.site, event.incident_id, domain=domain), flap_root
        token = f"{_site_token(event.site)}.{int(_finite(event.since))}"
        return f"<stable.{token}@{domain}>", flap_root
    root = incident_message_id(event.site, event.incident_id, domain=domain)
    if isinstance(event, WentDown):
        return root, None
    token = f"{_site_token(event.site)}.{_safe_token(event.incident_id)}"
    if isinstance(event, StillDown):
        return f"<still.{max(0, event.reminder)}.{token}@{domain}>", root
    return f"<recovered.{token}@{domain}>", root


def message_kind(event: Event) -> str:
    """The `kind` label of sentinel_emails_sent_total: down, still_down, recovered, certificate."""
    if isinstance(event, WentDown):
        return "down"
    if isinstance(event, StillDown):
        return "still_down"
    if isinstance(event, Recovered):
        return "recovered"
    if isinstance(event, Flapping):
        return "flapping"
    if isinstance(event, Stable):
        return "stable"
    return "certificate"


# ---------------------------------------------------------------- bodies


def _target_label(target: str) -> str:
    return "URL" if target.startswith(("http://", "https://")) else "Target"


def _result_row(result: ResultSummary) -> tuple[str, str, str, str, str]:
    status = f"HTTP {result.status}" if result.status else "-"
    latency = f"{round(max(0.0, _finite(result.total)) * 1000)} ms"
    detail = "" if result.ok else _reason_text(result.reason, result.message, _MAX_BODY_TEXT)
    return (fmt_time(result.at), "ok" if result.ok else "FAILED", status, latency, detail)


def _results_text(recent: Sequence[ResultSummary]) -> list[str]:
    if not recent:
        return []
    lines = ["", "Last probe results (UTC):"]
    for when, outcome, status, latency, detail in map(_result_row, recent):
        line = f"  {when[:-4]}  {outcome:<6}  {status:<8}  {latency:>9}"
        lines.append(f"{line}  {detail}".rstrip())
    return lines


def _results_html(recent: Sequence[ResultSummary]) -> str:
    if not recent:
        return ""
    rows = []
    for when, outcome, status, latency, detail in map(_result_row, recent):
        cells = "".join(
            f"<td>{html.escape(cell)}</td>" for cell in (when, outcome, status, latency, detail)
        )
        rows.append(f"<tr>{cells}</tr>")
    head = "".join(
        f'<th align="left">{name}</th>'
        for name in ("Time", "Result", "Status", "Latency", "Reason")
    )
    return (
        "<h3>Last probe results</h3>\n"
        f'<table cellpadding="4"><tr>{head}</tr>\n' + "\n".join(rows) + "\n</table>\n"
    )


def fields_text(fields: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in fields) + 2
    return [f"{name + ':':<{width}}{value}" for name, value in fields]


def fields_html(fields: Sequence[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><th align="left">{html.escape(name)}</th><td>{html.escape(value)}</td></tr>\n'
        for name, value in fields
    )
    return f'<table cellpadding="4">\n{rows}</table>\n'


def _content(event: Event, site: str, target: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(subject, headline, fields) for an event."""
    where = (_target_label(target), one_line(target, 2000))
    if isinstance(event, WentDown):
        subject_reason = _reason_text(event.reason, event.message, _MAX_MESSAGE)
        return (
            f"{SUBJECT_PREFIX} DOWN: {site} — {subject_reason}",
            f"{site} is DOWN.",
            [
                ("Site", site),
                where,
                ("Failure", _reason_text(event.reason, event.message, _MAX_BODY_TEXT)),
                ("Down since", f"{fmt_time(event.since)} (first failed probe)"),
                ("Detected", fmt_time(event.at)),
                ("Down for", human_duration(event.at - event.since)),
            ],
        )
    if isinstance(event, StillDown):
        duration = human_duration(event.duration)
        return (
            f"{SUBJECT_PREFIX} STILL DOWN: {site} for {duration}",
            f"{site} is still DOWN, for {duration} now (reminder {event.reminder}).",
            [
                ("Site", site),
                where,
                ("Failure", _reason_text(event.reason, event.message, _MAX_BODY_TEXT)),
                ("Down since", fmt_time(event.since)),
                ("Checked", fmt_time(event.at)),
                ("Down for", duration),
            ],
        )
    if isinstance(event, Recovered):
        downtime = human_duration(event.downtime)
        return (
            f"{SUBJECT_PREFIX} RECOVERED: {site} after {downtime}",
            f"{site} is back UP after {downtime} of downtime.",
            [
                ("Site", site),
                where,
                ("Down since", fmt_time(event.since)),
                ("Up again", f"{fmt_time(event.until)} (first good probe)"),
                ("Total downtime", downtime),
            ],
        )
    if isinstance(event, Flapping):
        window = human_duration(event.window)
        return (
            f"{SUBJECT_PREFIX} FLAPPING: {site}",
            f"{site} is FLAPPING: it changed between UP and DOWN {event.changes} times within "
            f"{window}. You get no DOWN or RECOVERED emails for it until it is stable again.",
            [
                ("Site", site),
                where,
                ("Flapping since", fmt_time(event.since)),
                ("Right now", event.status.value.upper()),
            ],
        )
    if isinstance(event, Stable):
        now = "UP" if event.status is Status.UP else "DOWN"
        return (
            f"{SUBJECT_PREFIX} STABLE: {site} (now {now})",
            f"{site} has stopped flapping and is {now} since {fmt_time(event.stable_since)}.",
            [
                ("Site", site),
                where,
                ("Flapping since", fmt_time(event.since)),
                (f"{now} since", fmt_time(event.stable_since)),
            ],
        )
    days = event.days_left
    unit = "day" if days == 1 else "days"
    rows = [("Site", site), where, ("Expires", fmt_time(event.expires_at))]
    # The earliest expiry in the served chain: maybe an intermediate, not the site's own. The
    # subject comes from the server: cleaned like any text from outside.
    cert = one_line(event.subject or "", 200)
    if cert:
        rows.append(("Certificate", cert))
    return (
        f"{SUBJECT_PREFIX} CERTIFICATE: {site} expires in {days} days",
        f"A TLS certificate served by {site} expires in {days} {unit}: {cert}."
        if cert
        else f"The TLS certificate of {site} expires in {days} {unit}.",
        [*rows, ("Checked", fmt_time(event.at))],
    )


def _footer(kind: str) -> list[str]:
    lines = ["", "-- ", "sentinel"]
    if kind in ("down", "still_down"):
        lines.insert(0, "")
        lines.insert(1, "You will get one email when it is back up.")
    return lines


# ---------------------------------------------------------------- assembling


def text_header(msg: EmailMessage, name: str, value: str) -> None:
    encoded = _wire_header(name, value)
    if encoded is None:
        msg[name] = value
    else:
        # Stored as is: the generator emits such a value verbatim while its lines fit in 78
        # columns (policy.refold_source == "long"), and reading the header decodes it.
        msg.set_raw(name, encoded)


def base_message(
    *,
    cfg: EmailConfig,
    subject: str,
    at: float,
    message_id: str,
    kind: str,
    root: str | None = None,
    site: str | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    text_header(msg, "Subject", subject)
    msg["From"] = one_line(cfg.sender, 998)
    msg["To"] = ", ".join(one_line(r, 998) for r in cfg.recipients)
    msg["Date"] = email.utils.format_datetime(_utc(at))
    msg["Message-ID"] = message_id
    if root is not None:
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    msg["X-Sentinel-Kind"] = kind
    if site is not None:
        text_header(msg, "X-Sentinel-Site", site)
    return msg


def build_message(event: Event, *, email: EmailConfig, target: str) -> EmailMessage:
    """The alert email for a monitor event. Same event + config -> byte-identical message."""
    domain = message_domain(email.sender)
    site = one_line(event.site, _MAX_SITE) or "?"
    kind = message_kind(event)
    subject, headline, fields = _content(event, site, target)
    message_id, root = _event_message_id(event, domain)

    msg = base_message(
        cfg=email,
        subject=subject,
        at=event.at,
        message_id=message_id,
        kind=kind,
        root=root,
        site=site,
    )

    recent: Sequence[ResultSummary] = () if isinstance(event, CertExpiring) else event.recent
    text_lines = [headline, "", *fields_text(fields), *_results_text(recent), *_footer(kind)]
    msg.set_content("\n".join(text_lines) + "\n", charset="utf-8", cte="quoted-printable")
    body_html = (
        "<!DOCTYPE html>\n<html><body>\n"
        f"<p><strong>{html.escape(headline)}</strong></p>\n"
        f"{fields_html(fields)}{_results_html(recent)}"
        "<p>&mdash; sentinel</p>\n</body></html>\n"
    )
    msg.add_alternative(body_html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary derived from the content keeps the output deterministic; "=_" can never occur in
    # quoted-printable text, so the boundary cannot collide with a body line.
    digest = hashlib.sha256("\n".join([*text_lines, body_html]).encode("utf-8")).hexdigest()
    msg.set_boundary(f"=_sentinel_{digest[:32]}")
    return msg


def build_test_message(*, email: EmailConfig, now: float) -> EmailMessage:
    """`sentinel test-email`: proves the SMTP settings work end to end."""
    domain = message_domain(email.sender)
    millis = int(min(max(_finite(now), _MIN_TS), _MAX_TS) * 1000)
    msg = base_message(
        cfg=email,
        subject=f"{SUBJECT_PREFIX} test email",
        at=now,
        message_id=f"<test.{millis}@{domain}>",
        kind="test",
    )
    fields = [
        ("Sent", fmt_time(now)),
        ("SMTP server", f"{email.smtp_host}:{email.smtp_port} (security: {email.security})"),
        ("Recipients", ", ".join(email.recipients)),
    ]
    text = "\n".join(
        [
            "This is a test email from sentinel.",
            "If you can read it, sentinel's alert emails will reach you.",
            "",
            *fields_text(fields),
            "",
            "-- ",
            "sentinel",
        ]
    )
    msg.set_content(text + "\n", charset="utf-8", cte="quoted-printable")
    return msg
