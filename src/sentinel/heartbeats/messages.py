"""Heartbeat alert emails: LATE, FAILED and RECOVERED. Pure: no clock, no I/O.

    [sentinel] LATE: nightly-backup — no ping since <time> (expected by <time>)
    [sentinel] FAILED: nightly-backup — exit 2            (the job's last output in the body)
    [sentinel] RECOVERED: nightly-backup after 2h 5m      (a reply to the email that opened it)

The email that opens an incident is its thread root; its Message-ID depends only on (heartbeat,
incident id), so a retry from the outbox or a restart gives the very same IDs. A job's output is
text from outside: control characters (ANSI colours, NUL, CR) are removed and it is capped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import tzinfo
from email.message import EmailMessage

from sentinel.config import EmailConfig
from sentinel.heartbeats.state import Event, Failed, Late, Recovered
from sentinel.notify.message import SUBJECT_PREFIX, human_duration
from sentinel.notify.mime import (
    attach_bodies,
    base_message,
    fields_html,
    html_page,
    message_domain,
    state_badge,
    text_header,
)
from sentinel.notify.wording import fmt_time as _fmt_time
from sentinel.notify.wording import wrap_fields
from sentinel.sanitize import escape_html
from sentinel.sanitize import one_line as _clean

__all__ = ["build_heartbeat_message", "heartbeat_message_kind", "heartbeat_thread_id"]

_MAX_NAME = 100
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Every control character but tab and newline (CR is folded into newline first).
_OUTPUT_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def heartbeat_message_kind(event: Event) -> str:
    """The `kind` of the outbox row and of sentinel_emails_sent_total: late, failed, recovered."""
    if isinstance(event, Late):
        return "late"
    if isinstance(event, Failed):
        return "failed"
    return "recovered"


def _token(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def heartbeat_thread_id(name: str, incident_id: str, *, domain: str) -> str:
    """The Message-ID of the email that opened the incident; the others refer to it."""
    return f"<hb.{_token(name)}.{_clean(incident_id, 32) or '0'}@{domain}>"


def _ids(event: Event, domain: str) -> tuple[str, str | None]:
    """(Message-ID, thread root or None when the email is the root itself)."""
    root = heartbeat_thread_id(event.name, event.incident_id, domain=domain)
    if isinstance(event, Late) or (isinstance(event, Failed) and event.opens):
        return root, None
    suffix = f"{_token(event.name)}.{_clean(event.incident_id, 32) or '0'}@{domain}"
    if isinstance(event, Failed):
        return f"<hbfail.{suffix}>", root
    return f"<hbrecovered.{suffix}>", root


def clean_output(text: str) -> str:
    """A job's output, safe to show: CRLF/CR become newlines, colours and other control
    characters go, trailing whitespace of each line too."""
    text = _ANSI_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _OUTPUT_CONTROL_RE.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _exit_text(code: int | None) -> str:
    return "reported a failure" if code is None else f"exit {code}"


def _content(
    event: Event, name: str, tz: tzinfo | None = None
) -> tuple[str, str, list[tuple[str, str]], str]:
    """(subject, headline, fields, output) for an event; times in `tz` (None: UTC)."""

    def t(ts: float) -> str:
        return _fmt_time(ts, tz)

    if isinstance(event, Late):
        expected = t(event.expected_at)
        if event.started_at is not None:
            summary = f"started {t(event.started_at)}, no end ping (expected by {expected})"
            headline = f"{name} started but did not report its end in time."
        elif event.last_ping is None:
            summary = f"no ping yet (expected by {expected})"
            headline = f"{name} has never pinged."
        else:
            summary = f"no ping since {t(event.last_ping)} (expected by {expected})"
            headline = f"{name} is LATE: no ping in time."
        fields = [
            ("Heartbeat", name),
            ("Last ping", "never" if event.last_ping is None else t(event.last_ping)),
            ("Expected by", expected),
            ("Detected", t(event.at)),
        ]
        if event.started_at is not None:
            fields.insert(2, ("Run started", t(event.started_at)))
        return f"{SUBJECT_PREFIX} LATE: {name} — {summary}", headline, fields, ""
    if isinstance(event, Failed):
        what = _exit_text(event.exit_code)
        fields = [("Heartbeat", name), ("Result", what), ("Reported", t(event.at))]
        if event.duration is not None:
            fields.append(("Run time", human_duration(event.duration)))
        return (
            f"{SUBJECT_PREFIX} FAILED: {name} — {what}",
            f"{name} FAILED ({what}).",
            fields,
            clean_output(event.output),
        )
    assert isinstance(event, Recovered)
    after = human_duration(event.at - event.since)
    return (
        f"{SUBJECT_PREFIX} RECOVERED: {name} after {after}",
        f"{name} is OK again: a successful ping, {after} after it went {event.was.upper()}.",
        [
            ("Heartbeat", name),
            ("Incident since", t(event.since)),
            ("Good ping", t(event.at)),
            ("Duration", after),
        ],
        "",
    )


def _output_text(output: str) -> list[str]:
    if not output:
        return []
    return ["", "Last output of the job:", "", *("  " + line for line in output.split("\n"))]


def build_heartbeat_message(
    event: Event, *, email: EmailConfig, tz: tzinfo | None = None
) -> EmailMessage:
    """The alert email for a heartbeat event, its times in `tz` (`[sentinel] timezone`; None:
    UTC). Same event + config -> byte-identical message."""
    domain = message_domain(email.sender)
    name = _clean(event.name, _MAX_NAME) or "?"
    kind = heartbeat_message_kind(event)
    subject, headline, fields, output = _content(event, name, tz)
    message_id, root = _ids(event, domain)
    msg = base_message(
        sender=email.sender,
        recipients=email.recipients,
        subject=subject,
        at=event.at,
        message_id=message_id,
        kind=kind,
        root=root,
    )
    text_header(msg, "X-Sentinel-Heartbeat", name)
    footer: Sequence[str] = ["", "-- ", "sentinel"]
    if not isinstance(event, Recovered):
        footer = ["", "You will get one email when it pings successfully again.", *footer]
    text_lines = [headline, "", *wrap_fields(fields), *_output_text(output), *footer]
    output_html = (
        f"<h2>Last output of the job</h2>\n<pre>{escape_html(output)}</pre>\n" if output else ""
    )
    badge = {"late": ("LATE", "bad"), "failed": ("FAILED", "bad")}.get(kind, ("OK", "good"))
    body_html = html_page(
        title=subject,
        badge=state_badge(*badge),
        headline=headline,
        body=fields_html(fields) + output_html,
    )
    attach_bodies(msg, text_lines, body_html)
    return msg
