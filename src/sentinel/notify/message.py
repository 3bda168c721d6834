"""Alert emails: monitor events in, ready-to-send `EmailMessage`s out. Pure: no clock, no I/O.

Owns the subjects promised in PRODUCT.md (reason first, in words: `[sentinel] DOWN: blog —
connection refused`), the plain-text (78 columns) and HTML (responsive) bodies, and the threading
headers: every email of one incident replies to the DOWN email, whose Message-ID is derived from
(site, incident_id) alone, so a restart or a retry from the outbox produces the very same IDs.
Anything that came from a remote server (probe reason/message) is scrubbed of control and line-break
characters and capped before it reaches a header. The reason code stays machine-readable in
X-Sentinel-Reason. What the daemon knows beyond the event (the display time zone, the status
page, the diagnosis of a DOWN) comes in a `MessageContext`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from email.message import EmailMessage
from urllib.parse import quote

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
from sentinel.notify.mime import (
    POLICY,
    attach_bodies,
    base_message,
    fields_html,
    html_page,
    message_domain,
    state_badge,
    text_header,
    wire_header,
)
from sentinel.notify.wording import (
    failure_words,
    fmt_clock,
    fmt_latency,
    fmt_time,
    wrap_fields,
)
from sentinel.sanitize import escape_html, one_line

__all__ = [
    "POLICY",
    "MessageContext",
    "build_message",
    "build_test_message",
    "certificate_message_id",
    "human_duration",
    "incident_message_id",
    "message_domain",
    "message_kind",
    "site_page_url",
]

SUBJECT_PREFIX = "[sentinel]"
_MAX_SITE = 100  # the config already caps site names at 100 characters
_MAX_BODY_TEXT = 500  # a remote message in the body
_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_REASON_TOKEN_RE = re.compile(r"[^a-z0-9_]")
_MIN_TS = 0.0
_MAX_TS = 253402300799.0  # 9999-12-31 23:59:59 UTC

# Kept for the modules that built on the old private names (channels/email.py, heartbeats).
_wire_header = wire_header
_text_header = text_header
_fields_html = fields_html


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What an email may say beyond its event: the display time zone (None: UTC), the link to
    the site's page on the status page, and for a DOWN the diagnosis (`sentinel.notify.diagnosis`):
    a one-sentence `summary` for the top and the lines of "what sentinel knows"."""

    tz: tzinfo | None = None
    site_page: str | None = None
    summary: str = ""
    diagnosis: tuple[str, ...] = ()
    local: tuple[str, ...] = ()  # facts about the local services and the host


def site_page_url(public_url: str, site: str) -> str | None:
    """`https://status.example/sites/blog` from `[status_page] public_url`; None when unset."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/sites/{quote(site, safe='')}"


# ---------------------------------------------------------------- text helpers


def _finite(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def _fmt_time(ts: float, tz: tzinfo | None = None) -> str:
    """'2026-11-26 23:10:05 UTC'; in `tz` with its offset."""
    return fmt_time(ts, tz)


def base_message_for(
    *,
    cfg: EmailConfig,
    subject: str,
    at: float,
    message_id: str,
    kind: str,
    root: str | None = None,
    site: str | None = None,
) -> EmailMessage:
    """`mime.base_message` addressed as `cfg` says (the email channel's fallback uses it too)."""
    return base_message(
        sender=cfg.sender,
        recipients=cfg.recipients,
        subject=subject,
        at=at,
        message_id=message_id,
        kind=kind,
        root=root,
        site=site,
    )


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


# ---------------------------------------------------------------- identifiers


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


def _words(reason: str, message: str, recent: Sequence[ResultSummary]) -> str:
    """The failure in words; the HTTP status comes from the latest failed result of that reason."""
    status = next((r.status for r in reversed(recent) if not r.ok and r.reason == reason), 0)
    return failure_words(reason, message, status=status)


def _failure_detail(reason: str, message: str) -> str:
    """The probe's own message and its reason code, for the body: 'connection refused by
    127.0.0.1:8080 (connect_refused)'."""
    code = one_line(reason, 40) or "error"
    text = one_line(message, _MAX_BODY_TEXT)
    return f"{text} ({code})" if text and text != code else code


def _result_row(result: ResultSummary, tz: tzinfo | None) -> tuple[str, str, str, str, str]:
    status = f"HTTP {result.status}" if result.status else "—"
    # A failed probe has no meaningful latency: "—", never "0 ms".
    latency = fmt_latency(result.total) if result.ok else "—"
    detail = "" if result.ok else failure_words(result.reason, result.message, status=result.status)
    when = fmt_clock(result.at, tz)
    return (when, "ok" if result.ok else "FAILED", status, latency, detail)


def _results_text(recent: Sequence[ResultSummary], tz: tzinfo | None) -> list[str]:
    if not recent:
        return []
    lines = ["", "Last probe results (UTC):" if tz is None else "Last probe results:"]
    for when, outcome, status, latency, detail in (_result_row(r, tz) for r in recent):
        line = f"  {when}  {outcome:<6}  {status:<8}  {latency:>7}"
        lines.append(f"{line}  {detail}".rstrip())
    return lines


def _results_html(recent: Sequence[ResultSummary], tz: tzinfo | None) -> str:
    if not recent:
        return ""
    items = []
    for when, outcome, status, latency, detail in (_result_row(r, tz) for r in recent):
        parts = [f"<strong>{escape_html(outcome)}</strong>"]
        # (no "—" placeholders here: a list item says only what there is)
        parts += [escape_html(cell) for cell in (status, latency) if cell != "—"]
        if detail:
            parts.append(escape_html(detail))
        items.append(
            f'<li><span class="muted">{escape_html(when)}</span><br>{" · ".join(parts)}</li>'
        )
    return "<h2>Last probe results</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>\n"


def _list_text(title: str, lines: Sequence[str]) -> list[str]:
    if not lines:
        return []
    return ["", title, *(f"  - {line}" for line in lines)]


def _list_html(title: str, lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape_html(line)}</li>\n" for line in lines)
    return f"<h2>{escape_html(title)}</h2>\n<ul>\n{items}</ul>\n"


@dataclass(frozen=True, slots=True)
class _Content:
    subject: str
    headline: str
    fields: list[tuple[str, str]]
    state: str  # the highlighted state word
    tone: str  # bad, good, warn


def _content(event: Event, site: str, target: str, tz: tzinfo | None) -> _Content:
    """Subject, headline, fields and highlighted state for an event."""
    where = (_target_label(target), one_line(target, 2000))

    def t(ts: float) -> str:
        return fmt_time(ts, tz)

    if isinstance(event, WentDown):
        words = _words(event.reason, event.message, event.recent)
        return _Content(
            f"{SUBJECT_PREFIX} DOWN: {site} — {words}",
            f"{site} is DOWN: {words}.",
            [
                ("Site", site),
                where,
                ("Failure", _failure_detail(event.reason, event.message)),
                ("Down since", f"{t(event.since)} (first failed probe)"),
                ("Detected", t(event.at)),
                ("Down for", human_duration(event.at - event.since)),
            ],
            "DOWN",
            "bad",
        )
    if isinstance(event, StillDown):
        duration = human_duration(event.duration)
        words = _words(event.reason, event.message, event.recent)
        return _Content(
            f"{SUBJECT_PREFIX} STILL DOWN: {site} for {duration}",
            f"{site} is still DOWN, for {duration} now: {words} (reminder {event.reminder}).",
            [
                ("Site", site),
                where,
                ("Failure", _failure_detail(event.reason, event.message)),
                ("Down since", t(event.since)),
                ("Checked", t(event.at)),
                ("Down for", duration),
            ],
            "STILL DOWN",
            "bad",
        )
    if isinstance(event, Recovered):
        downtime = human_duration(event.downtime)
        return _Content(
            f"{SUBJECT_PREFIX} RECOVERED: {site} after {downtime}",
            f"{site} is back UP after {downtime} of downtime.",
            [
                ("Site", site),
                where,
                ("Down since", t(event.since)),
                ("Up again", f"{t(event.until)} (first good probe)"),
                ("Total downtime", downtime),
            ],
            "UP",
            "good",
        )
    if isinstance(event, Flapping):
        window = human_duration(event.window)
        return _Content(
            f"{SUBJECT_PREFIX} FLAPPING: {site}",
            f"{site} is FLAPPING: it changed between UP and DOWN {event.changes} times within "
            f"{window}. You get no DOWN or RECOVERED emails for it until it is stable again.",
            [
                ("Site", site),
                where,
                ("Flapping since", t(event.since)),
                ("Right now", event.status.value.upper()),
            ],
            "FLAPPING",
            "warn",
        )
    if isinstance(event, Stable):
        now = "UP" if event.status is Status.UP else "DOWN"
        return _Content(
            f"{SUBJECT_PREFIX} STABLE: {site} (now {now})",
            f"{site} has stopped flapping and is {now} since {t(event.stable_since)}.",
            [
                ("Site", site),
                where,
                ("Flapping since", t(event.since)),
                (f"{now} since", t(event.stable_since)),
            ],
            f"STABLE, {now}",
            "good" if now == "UP" else "bad",
        )
    days = event.days_left
    unit = "day" if days == 1 else "days"
    rows = [("Site", site), where, ("Expires", t(event.expires_at))]
    # The earliest expiry in the served chain: maybe an intermediate, not the site's own. The
    # subject comes from the server: cleaned like any text from outside.
    cert = one_line(event.subject or "", 200)
    if cert:
        rows.append(("Certificate", cert))
    return _Content(
        f"{SUBJECT_PREFIX} CERTIFICATE: {site} expires in {days} days",
        f"A TLS certificate served by {site} expires in {days} {unit}: {cert}."
        if cert
        else f"The TLS certificate of {site} expires in {days} {unit}.",
        [*rows, ("Checked", t(event.at))],
        "CERTIFICATE",
        "warn",
    )


def _footer(kind: str) -> list[str]:
    lines = ["", "-- ", "sentinel"]
    if kind in ("down", "still_down"):
        lines.insert(0, "")
        lines.insert(1, "You will get one email when it is back up.")
    return lines


# ---------------------------------------------------------------- assembling


def _reason_code(event: Event) -> str | None:
    if isinstance(event, WentDown | StillDown):
        return _REASON_TOKEN_RE.sub("_", event.reason.lower())[:40] or "error"
    return None


def build_message(
    event: Event,
    *,
    email: EmailConfig,
    target: str,
    context: MessageContext | None = None,
) -> EmailMessage:
    """The alert email for a monitor event. Same event + config + context -> byte-identical
    message."""
    ctx = context or MessageContext()
    domain = message_domain(email.sender)
    site = one_line(event.site, _MAX_SITE) or "?"
    kind = message_kind(event)
    content = _content(event, site, target, ctx.tz)
    message_id, root = _event_message_id(event, domain)

    msg = base_message_for(
        cfg=email,
        subject=content.subject,
        at=event.at,
        message_id=message_id,
        kind=kind,
        root=root,
        site=site,
    )
    reason = _reason_code(event)
    if reason is not None:
        msg["X-Sentinel-Reason"] = reason

    fields = list(content.fields)
    if ctx.site_page:
        fields.insert(2, ("Status page", ctx.site_page))
    # (lines that quote a server's words: cleaned like any text from outside)
    diagnosis = tuple(one_line(x, 500) for x in ctx.diagnosis) if kind == "down" else ()
    local = tuple(one_line(x, 500) for x in ctx.local) if kind == "down" else ()
    summary = one_line(ctx.summary, 600) if kind == "down" else ""
    recent: Sequence[ResultSummary] = () if isinstance(event, CertExpiring) else event.recent

    text_lines = [content.headline]
    if summary:
        text_lines.append(summary)
    text_lines += ["", *wrap_fields(fields)]
    text_lines += _list_text("What sentinel knows:", diagnosis)
    text_lines += _list_text("On this host:", local)
    text_lines += _results_text(recent, ctx.tz)
    text_lines += _footer(kind)

    summary_html = f"<p><strong>{escape_html(summary)}</strong></p>\n" if summary else ""
    body_html = html_page(
        title=content.subject,
        badge=state_badge(content.state, content.tone),
        headline=content.headline,
        body=(
            summary_html
            + fields_html(fields)
            + _list_html("What sentinel knows", diagnosis)
            + _list_html("On this host", local)
            + _results_html(recent, ctx.tz)
        ),
    )
    attach_bodies(msg, text_lines, body_html)
    return msg


def build_test_message(*, email: EmailConfig, now: float) -> EmailMessage:
    """`sentinel test-email`: proves the SMTP settings work end to end."""
    domain = message_domain(email.sender)
    millis = int(min(max(_finite(now), _MIN_TS), _MAX_TS) * 1000)
    msg = base_message_for(
        cfg=email,
        subject=f"{SUBJECT_PREFIX} test email",
        at=now,
        message_id=f"<test.{millis}@{domain}>",
        kind="test",
    )
    fields = [
        ("Sent", _fmt_time(now)),
        ("SMTP server", f"{email.smtp_host}:{email.smtp_port} (security: {email.security})"),
        ("Recipients", ", ".join(email.recipients)),
    ]
    lines = [
        "This is a test email from sentinel.",
        "If you can read it, sentinel's alert emails will reach you.",
        "",
        *wrap_fields(fields),
        "",
        "-- ",
        "sentinel",
    ]
    attach_bodies(msg, lines, None)
    return msg
