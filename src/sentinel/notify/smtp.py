"""SMTP delivery: one message, one connection, one deadline; every failure becomes a SendError.

Owns the mapping from the `[email]` settings to aiosmtplib (security none/starttls/tls, AUTH only
with a username) and the transient/permanent verdict the outbox retries on: connection problems,
timeouts, TLS failures and 4xx replies are transient; 5xx replies (refused recipients, rejected
content, failed authentication) and a server that lacks a required feature are permanent.
Also resolves the SMTP password (file, environment, systemd credential).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.config import EmailConfig
from sentinel.notify.errors import SendError
from sentinel.sanitize import one_line

if TYPE_CHECKING:  # imported on first use: ~1 MiB a daemon without [email] never needs
    import aiosmtplib

__all__ = [
    "CREDENTIAL_NAME",
    "PASSWORD_ENV",
    "PasswordError",
    "SmtpChannel",
    "resolve_password",
    "send_message",
]

log = logging.getLogger(__name__)

PASSWORD_ENV = "SENTINEL_SMTP_PASSWORD"
CREDENTIAL_NAME = "smtp-password"  # systemd LoadCredential=smtp-password:...
_MAX_DETAIL = 300
_MIN_REDACTED = 4


class PasswordError(ValueError):
    """The configured password file cannot be read. The message names the file, never content."""


def _read_secret(path: Path) -> str:
    # Messages name the file and the problem, never the content (`from None` drops the
    # UnicodeDecodeError, whose text would quote the offending bytes).
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PasswordError(f"{path}: not UTF-8 text") from None
    except FileNotFoundError:
        raise PasswordError(f"{path}: no such file") from None
    except PermissionError:
        raise PasswordError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise PasswordError(f"{path}: is a directory, not a password file") from None
    except OSError as exc:
        raise PasswordError(f"{path}: cannot read ({exc.strerror})") from None
    # Exactly one trailing newline is the file's, not the password's.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def resolve_password(cfg: EmailConfig, environ: Mapping[str, str]) -> str | None:
    """The SMTP password: `password_file` if set, else $SENTINEL_SMTP_PASSWORD, else
    $CREDENTIALS_DIRECTORY/smtp-password if that file exists, else None.

    Raises PasswordError if password_file (or an existing credential file) cannot be read.
    """
    if cfg.password_file:
        return _read_secret(Path(cfg.password_file))
    from_env = environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / CREDENTIAL_NAME
        try:
            exists = path.exists()
        except OSError as exc:  # e.g. another user's credentials directory: not ours to read
            raise PasswordError(
                f"{credentials}: credentials directory not readable ({exc.strerror}); "
                "run as the service does (systemd LoadCredential=) or set password_file"
            ) from None
        if exists:
            return _read_secret(path)
    return None


# ---------------------------------------------------------------- delivery


class _Redactor:
    """Turns a server's or library's text into one safe line without the password in it."""

    def __init__(self, where: str, password: str | None, username: str) -> None:
        self.where = where
        self._secrets: list[str] = []
        # A password of a few characters would "appear" in any text; masking it would garble
        # every message without protecting anything.
        if password and len(password) >= _MIN_REDACTED:
            raw = password.encode("utf-8", "surrogateescape")
            user = username.encode("utf-8", "surrogateescape")
            self._secrets = sorted(
                {
                    password,
                    base64.b64encode(raw).decode("ascii"),  # AUTH LOGIN
                    base64.b64encode(b"\0" + user + b"\0" + raw).decode("ascii"),  # AUTH PLAIN
                },
                key=len,
                reverse=True,
            )

    def line(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = one_line(text, _MAX_DETAIL)
        return one_line(f"{self.where}: {text}" if text else self.where, _MAX_DETAIL)

    def error(self, text: str, *, permanent: bool) -> SendError:
        return SendError(self.line(text), permanent=permanent)


def _reply(code: int, message: str) -> str:
    return f"{code} {message}".strip()


def _classify(exc: BaseException, stage: str, r: _Redactor, timeout: float) -> SendError:
    """The SendError for an exception raised while `stage` was in progress."""
    import aiosmtplib  # (lazy: see the top of the module)

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = [f"{e.recipient}: {_reply(e.code, e.message)}" for e in exc.recipients]
        permanent = bool(exc.recipients) and all(500 <= e.code <= 599 for e in exc.recipients)
        return r.error("all recipients refused: " + "; ".join(refused), permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return r.error(
            f"authentication failed: {_reply(exc.code, exc.message)}",
            permanent=500 <= exc.code <= 599,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4xx: try again later; 5xx: this message will not go through as it is.
        return r.error(
            f"{_reply(exc.code, exc.message)} (during {stage})", permanent=500 <= exc.code <= 599
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return r.error(f"timed out after {timeout:g}s (during {stage})", permanent=False)
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, ConnectionRefusedError):
            text = "connection refused"
        elif isinstance(cause, ssl.SSLError):
            text = f"TLS error: {cause}"
        elif isinstance(cause, OSError):
            text = f"cannot connect: {cause.strerror or cause}"
        else:
            text = f"cannot connect: {exc}"
        return r.error(text, permanent=False)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return r.error(f"connection lost: {exc} (during {stage})", permanent=False)
    if isinstance(exc, ssl.SSLError):
        # A bad or unexpected certificate may be fixed on the server side: keep retrying.
        return r.error(f"TLS error: {exc} (during {stage})", permanent=False)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return r.error(f"{exc} (during {stage})", permanent=True)
    if isinstance(exc, aiosmtplib.SMTPException) and stage == "login":
        # e.g. "The SMTP AUTH extension is not supported by this server."
        return r.error(f"{exc} (during {stage})", permanent=True)
    if isinstance(exc, ValueError):
        # aiosmtplib refuses addresses it cannot put on the wire; retrying cannot help.
        return r.error(f"invalid message: {exc}", permanent=True)
    if isinstance(exc, OSError):
        return r.error(f"{exc.strerror or exc} (during {stage})", permanent=False)
    return r.error(f"{type(exc).__name__}: {exc} (during {stage})", permanent=False)


class _Session:
    """One delivery attempt; `stage` names the step in progress for error messages."""

    def __init__(self, cfg: EmailConfig, tls_context: ssl.SSLContext | None, r: _Redactor) -> None:
        self.cfg = cfg
        self.r = r
        self.stage = "connect"
        import aiosmtplib  # (lazy: see the top of the module)

        self.client = aiosmtplib.SMTP(
            hostname=cfg.smtp_host,
            port=cfg.smtp_port,
            use_tls=cfg.security == "tls",
            start_tls=False,  # never implicitly: "none" is plain, "starttls" is done explicitly
            tls_context=tls_context,
            timeout=cfg.timeout,
            local_hostname=cfg.helo_name or None,  # EHLO name; a relay may want a full domain
        )

    async def deliver(self, message: EmailMessage, password: str | None) -> None:
        """Everything up to the server's acceptance of the message (the reply to DATA)."""
        client, cfg = self.client, self.cfg
        self.stage = "connect"
        await client.connect()
        if cfg.security == "starttls":
            self.stage = "EHLO"
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise self.r.error(
                    'server does not offer STARTTLS (security = "starttls"); use security = '
                    '"tls" for implicit TLS or "none" for a plain connection',
                    permanent=True,
                )
            self.stage = "STARTTLS"
            await client.starttls()
        if cfg.username:
            self.stage = "login"
            await client.login(cfg.username, password or "")
        self.stage = "send"
        refused, _ = await client.send_message(message)
        if refused:
            # Accepted for someone: a retry would duplicate it for the others, so only report.
            listed = "; ".join(f"{to}: {_reply(x.code, x.message)}" for to, x in refused.items())
            log.warning("%s", self.r.line(f"some recipients refused: {listed}"))


async def send_message(
    message: EmailMessage,
    cfg: EmailConfig,
    *,
    password: str | None,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Deliver `message` to the sender/recipients in its own From/To/Cc headers through the
    configured SMTP server, all within `cfg.timeout` seconds. Raises SendError on any failure."""
    r = _Redactor(f"smtp {cfg.smtp_host}:{cfg.smtp_port}", password, cfg.username)
    session = _Session(cfg, tls_context, r)
    deadline = asyncio.get_running_loop().time() + cfg.timeout
    try:
        async with asyncio.timeout_at(deadline):
            await session.deliver(message, password)
    except SendError:
        session.client.close()
        raise
    except BaseException as exc:
        session.client.close()
        if isinstance(exc, Exception):
            raise _classify(exc, session.stage, r, cfg.timeout) from exc
        raise
    # Accepted. Return now and say goodbye in the background: the caller records the delivery
    # (the outbox deletes the email) without waiting for a QUIT round trip, which keeps the window
    # in which a crash re-sends an accepted email as short as it can be; and a failed or late QUIT
    # must not turn into a retry (a duplicate email) anyway.
    task = asyncio.get_running_loop().create_task(_quit(session.client, deadline))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


# Strong references to the background QUIT tasks (the loop keeps only weak ones).
_CLOSING: set[asyncio.Task[None]] = set()


async def _quit(client: aiosmtplib.SMTP, deadline: float) -> None:
    try:
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(deadline):
                await client.quit()
    finally:
        client.close()


class SmtpChannel:
    """The delivery channel the outbox calls: `await channel.send(message)` or SendError."""

    name = "smtp"

    def __init__(
        self,
        cfg: EmailConfig,
        password: str | None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self._password = password
        self._tls_context = tls_context

    def __repr__(self) -> str:
        return f"SmtpChannel({self.cfg.smtp_host}:{self.cfg.smtp_port}, {self.cfg.security})"

    async def send(self, message: EmailMessage) -> None:
        await send_message(
            message, self.cfg, password=self._password, tls_context=self._tls_context
        )
