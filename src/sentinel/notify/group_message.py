"""Emails and alerts of outage grouping and of the network canary. Pure: no clock, no I/O.

A grouped alert is built from the alerts it replaces (`sentinel.notify.payload.Alert`, as stored
with each outbox item): `[sentinel] DOWN: 5 sites — blog, shop, …` listing every site with its
reason. Its Message-ID is derived from the incidents it carries, so a resend after a crash has the
same one; every later email of those incidents replies to it (`rethread`).

The network canary's emails: `[sentinel] NETWORK: sentinel cannot reach the internet` and its
RECOVERED, threaded to it.
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sentinel.config import EmailConfig
from sentinel.notify.message import human_duration
from sentinel.notify.mime import (
    POLICY,
    attach_bodies,
    html_page,
    message_domain,
    state_badge,
    text_header,
)
from sentinel.notify.outbox import parse_message
from sentinel.notify.payload import Alert
from sentinel.notify.wording import failure_words, fmt_time
from sentinel.sanitize import escape_html, one_line

__all__ = [
    "NETWORK_SITE",
    "NetworkNews",
    "group_alert",
    "group_email",
    "group_message_id",
    "network_alert",
    "network_email",
    "rethread",
]

PREFIX = "[sentinel]"
SUBJECT_NAMES = 60  # characters of site names in a grouped subject before "…"
MAX_REFERENCES = 20
# The outbox "site" of the network canary's alerts (not a configured site: a name with a space
# and parentheses cannot be one).
NETWORK_SITE = "(network)"


def group_message_id(kind: str, alerts: Sequence[Alert], *, domain: str) -> str:
    """A grouped email's Message-ID: from the incidents it carries, so it is stable."""
    incidents = "\n".join(sorted(f"{a.site}\0{a.incident_id}" for a in alerts))
    digest = hashlib.sha256(incidents.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"<group.{kind}.{digest}@{domain}>"


def _names(alerts: Sequence[Alert]) -> str:
    """'blog, shop, …': the site names that fit in a subject."""
    shown: list[str] = []
    length = 0
    for alert in alerts:
        name = one_line(alert.site, 100)
        if shown and length + len(name) + 2 > SUBJECT_NAMES:
            return ", ".join(shown) + ", …"
        shown.append(name)
        length += len(name) + 2
    return ", ".join(shown)


def _subject(kind: str, alerts: Sequence[Alert]) -> str:
    word = "DOWN" if kind == "down" else "RECOVERED"
    return f"{PREFIX} {word}: {len(alerts)} sites — {_names(alerts)}"


def _line(kind: str, alert: Alert) -> tuple[str, str, str]:
    """(site, target, what): what failed, or how long it was down."""
    if kind == "down":
        what = failure_words(alert.reason, alert.message)  # as a single DOWN's subject says it
    else:
        what = f"up again after {human_duration(alert.duration)}"
    return one_line(alert.site, 100), one_line(alert.url or "", 300), what


def group_alert(kind: str, alerts: Sequence[Alert], *, group_id: str) -> Alert:
    """The grouped alert as one Alert (what a fallback channel is handed): every site named."""
    lines = "; ".join(f"{site}: {what}" for site, _, what in (_line(kind, a) for a in alerts))
    return Alert(
        kind=kind,
        site=f"{len(alerts)} sites",
        url=None,
        summary=_subject(kind, alerts).removeprefix(PREFIX).strip(),
        reason="group",
        message=one_line(lines, 2000),
        since=min(a.since for a in alerts),
        at=max(a.at for a in alerts),
        incident_id=group_id,
        status_page=alerts[0].status_page,
    )


def group_email(
    kind: str,
    alerts: Sequence[Alert],
    *,
    email_config: EmailConfig,
    roots: Sequence[str] = (),
) -> bytes:
    """The grouped DOWN or RECOVERED email (SMTP bytes). A grouped RECOVERED replies to the
    emails of its DOWNs (`roots`)."""
    domain = message_domain(email_config.sender)
    message_id = group_message_id(kind, alerts, domain=domain)
    rows = [_line(kind, a) for a in alerts]
    if kind == "down":
        headline = f"{len(alerts)} sites are DOWN."
        footer = (
            "Each site's RECOVERED comes in this thread (together when they come back together)."
        )
    else:
        headline = f"{len(alerts)} sites are back UP."
        footer = ""
    text = [headline, ""]
    for site, target, what in rows:
        text.append(f"{site}: {what}")
        if target:
            text.append(f"  {target}")
    text += ["", f"Detected: {fmt_time(max(a.at for a in alerts))}"]
    if footer:
        text += ["", footer]
    text += ["", "-- ", "sentinel"]
    items = "".join(
        f"<dt>{escape_html(site)}</dt><dd>{escape_html(what)}"
        + (f"<br>{_link(target)}" if target else "")
        + "</dd>\n"
        for site, target, what in rows
    )
    body_html = html_page(
        title=_subject(kind, alerts),
        badge=state_badge("DOWN", "bad") if kind == "down" else state_badge("RECOVERED", "good"),
        headline=headline,
        body=f"<dl>\n{items}</dl>\n" + (f"<p>{escape_html(footer)}</p>\n" if footer else ""),
    )
    msg = email.message.EmailMessage(policy=POLICY)
    text_header(msg, "Subject", _subject(kind, alerts))
    msg["From"] = one_line(email_config.sender, 998)
    msg["To"] = ", ".join(one_line(r, 998) for r in email_config.recipients)
    msg["Date"] = email.utils.format_datetime(_utc(max(a.at for a in alerts)))
    msg["Message-ID"] = message_id
    unique = list(dict.fromkeys(roots))[:MAX_REFERENCES]
    if unique:
        msg["In-Reply-To"] = unique[0]
        msg["References"] = " ".join(unique)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Sentinel-Kind"] = kind
    msg["X-Sentinel-Group"] = str(len(alerts))
    attach_bodies(msg, text, body_html)
    return msg.as_bytes(policy=POLICY)


def _link(url: str) -> str:
    shown = escape_html(url)
    if url.startswith(("http://", "https://")) and " " not in url:
        return f'<a href="{escape_html(url, quote=True)}">{shown}</a>'
    return shown


def rethread(raw: bytes, root: str) -> bytes:
    """An incident's later email (a reminder, its own RECOVERED), made to reply to the grouped
    email its DOWN went out in. Unchanged if it cannot be parsed."""
    try:
        msg = parse_message(raw)
    except Exception:
        return raw
    old = msg.get("References")
    references = [root, *(str(old).split() if old else [])]
    del msg["In-Reply-To"]
    del msg["References"]
    msg["In-Reply-To"] = root
    msg["References"] = " ".join(dict.fromkeys(references))
    return msg.as_bytes(policy=POLICY)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(min(max(ts, 0.0), 253402300799.0), tz=UTC)


# ---------------------------------------------------------------- the network canary


@dataclass(frozen=True, slots=True)
class NetworkNews:
    """The network went down (`up` False: every canary failed) or came back (`up` True)."""

    up: bool
    incident_id: str
    since: float  # when every canary failed
    at: float
    canaries: tuple[tuple[str, str], ...]  # (canary, its last result in words)


def network_alert(news: NetworkNews, *, status_page: str | None = None) -> Alert:
    detail = "; ".join(f"{c}: {what}" for c, what in news.canaries)
    if news.up:
        summary = (
            f"RECOVERED: network — reachable again after {human_duration(news.at - news.since)}"
        )
    else:
        summary = "NETWORK: sentinel cannot reach the internet"
    return Alert(
        kind="recovered" if news.up else "network",
        site=NETWORK_SITE,
        url=None,
        summary=summary,
        reason="" if news.up else "network",
        message=one_line(detail, 500),
        since=news.since,
        at=news.at,
        incident_id=news.incident_id,
        status_page=status_page,
    )


def network_email(news: NetworkNews, *, email_config: EmailConfig) -> bytes:
    """The NETWORK email, or its RECOVERED (a reply to it)."""
    domain = message_domain(email_config.sender)
    token = hashlib.sha256(news.incident_id.encode()).hexdigest()[:16]
    root = f"<network.{token}@{domain}>"
    alert = network_alert(news)
    if news.up:
        headline = (
            "sentinel reaches the internet again (a canary answered). Sites still down are "
            "alerted now, each in its own email."
        )
    else:
        headline = (
            "Every canary failed: the problem is most likely sentinel's own network, not the "
            "sites. Site alerts are held until a canary answers again."
        )
    text = [
        headline,
        "",
        f"Since: {fmt_time(news.since)}",
        f"Checked: {fmt_time(news.at)}",
        "",
        "Canaries:",
        *(f"  {one_line(c, 200)}  {one_line(what, 200)}" for c, what in news.canaries),
        "",
        "-- ",
        "sentinel",
    ]
    msg = email.message.EmailMessage(policy=POLICY)
    text_header(msg, "Subject", f"{PREFIX} {alert.summary}")
    msg["From"] = one_line(email_config.sender, 998)
    msg["To"] = ", ".join(one_line(r, 998) for r in email_config.recipients)
    msg["Date"] = email.utils.format_datetime(_utc(news.at))
    if news.up:
        msg["Message-ID"] = f"<network-up.{token}@{domain}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
    else:
        msg["Message-ID"] = root
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Sentinel-Kind"] = alert.kind
    attach_bodies(msg, text, None)
    return msg.as_bytes(policy=POLICY)
