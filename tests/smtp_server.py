"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a free port, in its own thread.

    with SmtpServer() as server:                      # or server = SmtpServer().start(); .stop()
        cfg = EmailConfig(..., smtp_host="127.0.0.1", smtp_port=server.port, security="none")
        ...send...
        [mail] = await server.wait_for(1, timeout=5)  # or server.wait_for_sync(1, 5) in a thread
        assert mail.message["Subject"] == "..."       # mail: ReceivedMail (message, rcpt_tos, ...)

Options:
- tls="starttls" (offered; required before MAIL/AUTH unless require_starttls=False) or
  tls="implicit" (TLS from the first byte); the certificate (127.0.0.1 and localhost) comes from a
  trustme CA (pass ca= to share one); `server.client_tls_context()` trusts it,
  `server.write_ca_bundle(path)` writes it for SSL_CERT_FILE in a subprocess.
- auth=(user, password): AUTH required, only that pair accepted (535 otherwise);
  auth_mechanisms=["LOGIN"] offers only those.
- `server.script("421 4.3.2 try later")`: the next message(s) get these replies, in order, then
  messages are accepted again; `server.fail_always("550 5.7.1 no")` (None to stop). stage="rcpt"
  refuses the recipients instead of the DATA.
- `server.attempts` / `wait_for_attempts(n)`: DATA commands seen, refused ones included.
Also `SilentServer`: accepts TCP connections and never says a word (for timeout tests).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMail", "SilentServer", "SmtpServer"]

HOST = "127.0.0.1"
Stage = Literal["rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the parsed message plus the SMTP envelope and session facts."""

    message: EmailMessage
    raw: bytes
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the AUTH user, None if the client did not authenticate
    auth_mechanism: str | None  # "PLAIN", "LOGIN", ...
    tls: bool  # the message travelled over TLS (STARTTLS or implicit)


@dataclass(frozen=True)
class _Login:
    login: str
    mechanism: str


class _Controller(Controller):
    """Controller that binds port 0 and learns the real port before aiosmtpd connects to it."""

    implicit_tls = False

    def factory(self) -> SMTP:
        smtpd = super().factory()  # type: ignore[no-untyped-call]
        assert isinstance(smtpd, SMTP)
        if self.implicit_tls:
            # aiosmtpd counts only STARTTLS as TLS when deciding whether AUTH may proceed; with
            # implicit TLS the whole session is encrypted. (Set here rather than passing
            # auth_require_tls=False, which warns on every connection.)
            smtpd._auth_require_tls = False
        return smtpd

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        failure = self._owner._failure_for(envelope, "rcpt")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self._owner._count_attempt()
        failure = self._owner._failure_for(envelope, "data")
        if failure is not None:
            return failure
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = mechanism = None
        if session.authenticated and isinstance(session.auth_data, _Login):
            login, mechanism = session.auth_data.login, session.auth_data.mechanism
        self._owner._deliver(
            ReceivedMail(
                message=parsed,
                raw=raw,
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                login=login,
                auth_mechanism=mechanism,
                tls=session.ssl is not None
                or (
                    server.transport is not None
                    and server.transport.get_extra_info("ssl_object") is not None
                ),
            )
        )
        return "250 2.0.0 OK queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<free port>; collects what it accepts. Thread-safe."""

    def __init__(
        self,
        *,
        tls: Literal["starttls", "implicit"] | None = None,
        require_starttls: bool = True,
        auth: tuple[str, str] | None = None,
        auth_mechanisms: Sequence[str] | None = None,
        auth_require_tls: bool = True,
        ca: trustme.CA | None = None,
        port: int = 0,
    ) -> None:
        self.tls = tls
        self.auth = auth
        self.ca = ca if ca is not None else (trustme.CA() if tls else None)
        self.messages_received: list[ReceivedMail] = []
        self.attempts = 0  # DATA commands seen, accepted or refused
        self._cond = threading.Condition()
        self._script: list[tuple[str, Stage]] = []
        self._always: tuple[str, Stage] | None = None

        kwargs: dict[str, Any] = {
            "hostname": HOST,
            "port": port,  # 0 = a free port; a fixed one lets a test bring a "dead" server back
            "server_hostname": "localhost",  # our EHLO name; avoids a getfqdn() lookup
            "ready_timeout": 10.0,
            "enable_SMTPUTF8": True,
        }
        server_ctx: ssl.SSLContext | None = None
        if self.ca is not None and tls is not None:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(HOST, "localhost").configure_cert(server_ctx)
        if tls == "starttls":
            kwargs["tls_context"] = server_ctx
            kwargs["require_starttls"] = require_starttls
        elif tls == "implicit":
            kwargs["ssl_context"] = server_ctx
        if auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs.setdefault("auth_require_tls", auth_require_tls)
        if auth_mechanisms is not None:
            offered = {m.upper() for m in auth_mechanisms}
            kwargs["auth_exclude_mechanism"] = [m for m in ("PLAIN", "LOGIN") if m not in offered]
        self._controller = _Controller(_Handler(self), **kwargs)
        self._controller.implicit_tls = tls == "implicit"
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SmtpServer:
        self._controller.start()
        self.port = int(self._controller.port)
        return self

    def stop(self) -> None:
        if self._controller._thread is not None:
            self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ TLS for clients

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and verifies the host)."""
        if self.ca is None:
            raise RuntimeError("this server was started without TLS")
        return self.client_context_for(self.ca)

    @staticmethod
    def client_context_for(ca: trustme.CA) -> ssl.SSLContext:
        """A verifying client context that trusts only `ca`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
        ca.configure_trust(ctx)
        return ctx

    def write_ca_bundle(self, path: Path) -> Path:
        """Writes the CA certificate (PEM) to `path`, e.g. for SSL_CERT_FILE in a subprocess."""
        if self.ca is None:
            raise RuntimeError("this server was started without TLS")
        self.ca.cert_pem.write_to_path(str(path))
        return path

    # ------------------------------------------------------------ scripting failures

    def script(self, *responses: str, stage: Stage = "data") -> None:
        """Answer the next len(responses) messages with these responses, in order, then accept
        again. A response is a full SMTP reply line, e.g. "421 4.3.2 try later". At stage "rcpt"
        every RCPT of that message gets the response (all recipients refused)."""
        with self._cond:
            self._script.extend((r, stage) for r in responses)

    def fail_always(self, response: str | None, *, stage: Stage = "data") -> None:
        """Answer every message with `response` (after any scripted ones); None to stop."""
        with self._cond:
            self._always = None if response is None else (response, stage)

    def _failure_for(self, envelope: Envelope, stage: Stage) -> str | None:
        # One decision per message (envelope), taken at its first RCPT.
        decided: tuple[str, Stage] | bool | None = getattr(envelope, "_sentinel_failure", False)
        if decided is False:
            with self._cond:
                decided = self._script.pop(0) if self._script else self._always
            envelope._sentinel_failure = decided  # type: ignore[attr-defined]
        if isinstance(decided, tuple) and decided[1] == stage:
            return decided[0]
        return None

    # ------------------------------------------------------------ received mail

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.auth is not None and isinstance(data, LoginPassword):
            user, password = self.auth
            if data.login == user.encode() and data.password == password.encode():
                return AuthResult(success=True, auth_data=_Login(user, mechanism))
        return AuthResult(success=False, handled=False)

    def _count_attempt(self) -> None:
        with self._cond:
            self.attempts += 1
            self._cond.notify_all()

    def _deliver(self, mail: ReceivedMail) -> None:
        with self._cond:
            self.messages_received.append(mail)
            self._cond.notify_all()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._cond:
            return [m.message for m in self.messages_received]

    def received(self) -> list[ReceivedMail]:
        with self._cond:
            return list(self.messages_received)

    def wait_for_sync(self, count: int, timeout: float = 30.0) -> list[ReceivedMail]:
        """Block until at least `count` messages were accepted; TimeoutError after `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages_received) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, "
                    f"got {len(self.messages_received)}"
                )
            return list(self.messages_received)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMail]:
        """`wait_for_sync` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for_sync, count, timeout)

    def wait_for_attempts_sync(self, count: int, timeout: float = 30.0) -> int:
        """Block until at least `count` DATA commands (accepted or refused) were seen."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.attempts >= count, timeout):
                raise TimeoutError(
                    f"expected {count} attempt(s) within {timeout}s, got {self.attempts}"
                )
            return self.attempts

    async def wait_for_attempts(self, count: int, timeout: float = 30.0) -> int:
        return await asyncio.to_thread(self.wait_for_attempts_sync, count, timeout)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (an SMTP server that hangs).

    async with SilentServer() as silent: ... port = silent.port ...
    `connections` counts accepted connections; all are closed on exit.
    """

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._on_connect, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
