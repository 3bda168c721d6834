"""The "email" channel: the `[email]` section through the existing SMTP sender.

Adds to plain SMTP delivery what channels need: an email delivered late says so at the top of its
body (`mark_late`, pure), and an alert that reaches email as a fallback from another channel is
rendered as an email of its own (`build_alert_message`, pure), threaded with the incident.
Also owns the `[email]` TLS options: `tls_verify = false` and `ca_file` make the TLS context.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage

from sentinel.config import EmailConfig
from sentinel.notify.channels.base import Delivery, SetupError
from sentinel.notify.errors import SendError
from sentinel.notify.message import (
    POLICY,
    SUBJECT_PREFIX,
    base_message_for,
    incident_message_id,
    message_domain,
)
from sentinel.notify.outbox import parse_message
from sentinel.notify.payload import Alert, iso
from sentinel.notify.policy import late_note
from sentinel.notify.smtp import PasswordError, SmtpChannel, resolve_password
from sentinel.operator_env import checked_password
from sentinel.sanitize import escape_html

__all__ = ["EmailChannel", "build_alert_message", "mark_late", "smtp_tls_context"]

_THREADED = frozenset({"down", "still_down", "recovered"})


def smtp_tls_context(cfg: EmailConfig) -> ssl.SSLContext | None:
    """The TLS context for `[email]`: None (the library's default: verify against the system
    store) unless `ca_file` or `tls_verify = false` says otherwise. Raises SetupError."""
    if cfg.security == "none" or (cfg.tls_verify and not cfg.ca_file):
        return None
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SetupError(f"email: ca_file: {cfg.ca_file}: cannot load ({exc})") from None
    if not cfg.tls_verify:
        # A self-signed certificate on a local relay: encrypted, not authenticated.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def mark_late(message: EmailMessage, note: str) -> EmailMessage:
    """`message` with `note` as the first paragraph of its text and HTML bodies and an
    X-Sentinel-Delivered-Late header."""
    message["X-Sentinel-Delivered-Late"] = "yes"
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        subtype = part.get_content_subtype()
        if subtype not in ("plain", "html"):
            continue
        body = part.get_content()
        if subtype == "plain":
            new = f"{note}\n\n{body}"
        else:
            lead = f"<p><em>{escape_html(note)}</em></p>\n"
            at = body.find("<body>")
            new = body[: at + 6] + "\n" + lead + body[at + 6 :] if at >= 0 else lead + body
        if isinstance(part, EmailMessage):
            part.set_content(new, subtype=subtype, charset="utf-8", cte="quoted-printable")
    return message


def build_alert_message(alert: Alert, cfg: EmailConfig) -> EmailMessage:
    """An alert from another channel's queue (the email channel as a fallback) as an email."""
    domain = message_domain(cfg.sender)
    digest = hashlib.sha256(
        f"{alert.site}\0{alert.incident_id}\0{alert.kind}\0{alert.reminder}".encode(
            "utf-8", "surrogatepass"
        )
    ).hexdigest()[:24]
    root = None
    if alert.kind in _THREADED:
        root = incident_message_id(alert.site, alert.incident_id, domain=domain)
    msg = base_message_for(
        cfg=cfg,
        subject=f"{SUBJECT_PREFIX} {alert.summary}",
        at=alert.at,
        message_id=f"<fallback.{digest}@{domain}>",
        kind=alert.kind,
        root=root,
        site=alert.site,
    )
    lines = [alert.summary, ""]
    fields = [
        ("Site", alert.site),
        ("Target", alert.url or "-"),
        ("Since", iso(alert.since)),
        ("At", iso(alert.at)),
    ]
    if alert.message:
        fields.append(("Detail", alert.message))
    if alert.status_page:
        fields.append(("Status page", alert.status_page))
    lines += [f"{name + ':':<13}{value}" for name, value in fields]
    lines += ["", "-- ", "sentinel"]
    msg.set_content("\n".join(lines) + "\n", charset="utf-8", cte="quoted-printable")
    return msg


class EmailChannel:
    """The `email` channel."""

    def __init__(self, cfg: EmailConfig, smtp: SmtpChannel) -> None:
        self.name = "email"
        self.cfg = cfg
        self.smtp = smtp

    @classmethod
    def from_config(cls, cfg: EmailConfig, environ: Mapping[str, str]) -> EmailChannel:
        try:
            # A username without a password is refused here, naming where it should be.
            password = checked_password(cfg, resolve_password(cfg, environ), environ)
        except PasswordError as exc:
            raise SetupError(f"email: password_file: {exc}") from None
        return cls(cfg, SmtpChannel(cfg, password, smtp_tls_context(cfg)))

    def render(self, alert: Alert) -> bytes:
        return build_alert_message(alert, self.cfg).as_bytes(policy=POLICY)

    async def send(self, delivery: Delivery) -> None:
        try:
            message = parse_message(delivery.message)
        except Exception as exc:
            raise SendError(f"stored email cannot be parsed: {exc}", permanent=True) from None
        note = late_note(delivery.created_at, delivery.now)
        if note is not None:
            message = mark_late(message, note)
        await self.smtp.send(message)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
