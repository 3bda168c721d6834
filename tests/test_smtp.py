"""SMTP delivery against real servers on 127.0.0.1: aiosmtpd (tests/smtp_server.py) and raw
asyncio servers for the misbehaving cases. No mocks of the network."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import pytest
import trustme

from sentinel.config import EmailConfig
from sentinel.monitor import ResultSummary, WentDown
from sentinel.notify.errors import SendError
from sentinel.notify.message import build_message
from sentinel.notify.smtp import PasswordError, SmtpChannel, resolve_password, send_message
from smtp_server import SilentServer, SmtpServer
from timing import GENEROUS, near

USER = "alerts@example.org"
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "hunter2-wrong-secret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def email_cfg(port: int, **overrides: object) -> EmailConfig:
    cfg = EmailConfig(
        sender="sentinel <sentinel@example.org>",
        recipients=("owner@example.org", "ops@example.net"),
        smtp_host="127.0.0.1",
        smtp_port=port,
        security="none",
        timeout=5.0,
    )
    return replace(cfg, **overrides)  # type: ignore[arg-type]


def alert(cfg: EmailConfig) -> EmailMessage:
    result = ResultSummary(at=1.8e9, ok=False, status=500, total=0.1, reason="status", message="")
    event = WentDown(
        site="blog",
        incident_id="1800000000.000",
        since=1.8e9,
        at=1.8e9 + 120,
        reason="status",
        message="HTTP 500",
        recent=(result,),
    )
    return build_message(event, email=cfg, target="https://blog.example.org/")


async def send_expecting_error(
    cfg: EmailConfig, *, password: str | None = None, **kwargs: object
) -> SendError:
    with pytest.raises(SendError) as info:
        await send_message(alert(cfg), cfg, password=password, **kwargs)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- successful delivery


async def test_plain_delivery_arrives_with_subject_sender_and_all_recipients(
    plain_server: SmtpServer,
) -> None:
    cfg = email_cfg(plain_server.port)
    await send_message(alert(cfg), cfg, password=None)
    [mail] = await plain_server.wait_for(1)
    assert mail.message["Subject"] == "[sentinel] DOWN: blog — HTTP 500"
    assert mail.mail_from == "sentinel@example.org"
    assert mail.rcpt_tos == ("owner@example.org", "ops@example.net")
    assert mail.login is None
    assert not mail.tls


async def test_security_none_stays_plain_even_when_the_server_offers_starttls(
    ca: trustme.CA,
) -> None:
    with SmtpServer(tls="starttls", require_starttls=False, ca=ca) as server:
        cfg = email_cfg(server.port, security="none")
        await send_message(alert(cfg), cfg, password=None)
        [mail] = await server.wait_for(1)
        assert not mail.tls


async def test_starttls_delivery_to_a_server_that_requires_it(ca: trustme.CA) -> None:
    with SmtpServer(tls="starttls", ca=ca) as server:
        cfg = email_cfg(server.port, security="starttls")
        await send_message(alert(cfg), cfg, password=None, tls_context=server.client_tls_context())
        [mail] = await server.wait_for(1)
        assert mail.tls
        assert mail.message["Subject"].startswith("[sentinel] DOWN: blog")


async def test_implicit_tls_delivery_with_auth(ca: trustme.CA) -> None:
    with SmtpServer(tls="implicit", auth=(USER, PASSWORD), ca=ca) as server:
        cfg = email_cfg(server.port, security="tls", username=USER)
        await send_message(
            alert(cfg), cfg, password=PASSWORD, tls_context=server.client_tls_context()
        )
        [mail] = await server.wait_for(1)
        assert mail.tls
        assert mail.login == USER


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_over_starttls_with_the_right_password_succeeds(
    ca: trustme.CA, mechanism: str
) -> None:
    with SmtpServer(
        tls="starttls", auth=(USER, PASSWORD), auth_mechanisms=[mechanism], ca=ca
    ) as server:
        cfg = email_cfg(server.port, security="starttls", username=USER)
        channel = SmtpChannel(cfg, PASSWORD, tls_context=server.client_tls_context())
        await channel.send(alert(cfg))
        [mail] = await server.wait_for(1)
        assert mail.login == USER
        assert mail.auth_mechanism == mechanism
        assert mail.tls


async def test_after_a_421_the_next_attempt_is_delivered(plain_server: SmtpServer) -> None:
    plain_server.script("421 4.3.2 Service not available, try later")
    cfg = email_cfg(plain_server.port)
    error = await send_expecting_error(cfg)
    assert not error.permanent
    assert "421" in error.detail
    await send_message(alert(cfg), cfg, password=None)
    assert len(await plain_server.wait_for(1)) == 1
    assert plain_server.attempts == 2


# ---------------------------------------------------------------- failures: transient or permanent


async def test_a_4xx_reply_is_a_transient_error(plain_server: SmtpServer) -> None:
    plain_server.fail_always("451 4.3.0 Local error in processing")
    error = await send_expecting_error(email_cfg(plain_server.port))
    assert not error.permanent
    assert error.detail.startswith(f"smtp 127.0.0.1:{plain_server.port}: 451 4.3.0 Local error")
    assert "\n" not in error.detail


async def test_a_550_reply_is_a_permanent_error(plain_server: SmtpServer) -> None:
    plain_server.fail_always("550 5.7.1 Message rejected as spam")
    error = await send_expecting_error(email_cfg(plain_server.port))
    assert error.permanent
    assert error.detail.startswith(
        f"smtp 127.0.0.1:{plain_server.port}: 550 5.7.1 Message rejected"
    )
    assert str(error) == error.detail


async def test_all_recipients_refused_with_5xx_is_permanent(plain_server: SmtpServer) -> None:
    plain_server.fail_always("550 5.1.1 Mailbox unavailable", stage="rcpt")
    error = await send_expecting_error(email_cfg(plain_server.port))
    assert error.permanent
    assert "owner@example.org: 550 5.1.1 Mailbox unavailable" in error.detail
    assert "ops@example.net: 550" in error.detail


async def test_all_recipients_refused_with_4xx_is_transient(plain_server: SmtpServer) -> None:
    plain_server.fail_always("450 4.2.1 Mailbox busy", stage="rcpt")
    error = await send_expecting_error(email_cfg(plain_server.port))
    assert not error.permanent
    assert "450" in error.detail


async def test_connection_refused_is_transient() -> None:
    # A bound socket that does not listen: connecting to it is refused, and the port stays ours.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        error = await send_expecting_error(email_cfg(port))
    assert not error.permanent
    assert error.detail == f"smtp 127.0.0.1:{port}: connection refused"


async def test_a_server_that_never_answers_fails_transiently_within_the_deadline() -> None:
    async with SilentServer() as silent:
        cfg = email_cfg(silent.port, timeout=0.5)
        started = time.monotonic()
        error = await send_expecting_error(cfg)
        elapsed = time.monotonic() - started
        assert silent.connections == 1
    assert not error.permanent
    assert "timed out after 0.5s" in error.detail
    assert near(elapsed, 0.5), elapsed


async def test_the_deadline_covers_the_whole_conversation_not_each_reply() -> None:
    # Every reply comes in 0.2 s, well within a per-command timeout of 0.6 s, but the whole
    # conversation (greeting, EHLO, MAIL, RCPT x2, DATA, ...) would take over a second.
    async def slowly(line: bytes) -> bytes | None:
        await asyncio.sleep(0.2)  # the server's behaviour under test, not synchronisation
        return ordinary_reply(line)

    async with raw_smtp_server(slowly) as port:
        cfg = email_cfg(port, timeout=0.6)
        started = time.monotonic()
        error = await send_expecting_error(cfg)
        elapsed = time.monotonic() - started
    assert not error.permanent
    assert "timed out after 0.6s" in error.detail
    assert elapsed < 0.6 + GENEROUS  # not the >1 s the whole slow conversation would take


async def test_a_server_that_hangs_up_mid_conversation_is_transient() -> None:
    async def hang_up_at_mail(line: bytes) -> bytes | None:
        return None if line.upper().startswith(b"MAIL") else ordinary_reply(line)

    async with raw_smtp_server(hang_up_at_mail) as port:
        error = await send_expecting_error(email_cfg(port))
    assert not error.permanent
    assert "connection lost" in error.detail.lower()


async def test_an_accepted_message_is_delivered_even_if_quit_is_never_answered() -> None:
    # Raising here would make the outbox send the email again: a duplicate.
    release = asyncio.Event()
    data_commands = 0

    async def mute_at_quit(line: bytes) -> bytes | None:
        nonlocal data_commands
        if line.upper().startswith(b"QUIT"):
            await release.wait()
            return None
        data_commands += line.upper().startswith(b"DATA")
        return ordinary_reply(line)

    async with raw_smtp_server(mute_at_quit) as port:
        cfg = email_cfg(port, timeout=0.5)
        started = time.monotonic()
        await send_message(alert(cfg), cfg, password=None)
        elapsed = time.monotonic() - started
        release.set()
    assert data_commands == 1
    assert elapsed < 0.5 + GENEROUS


async def test_starttls_required_but_not_offered_fails_permanently_with_a_clear_message(
    plain_server: SmtpServer,
) -> None:
    error = await send_expecting_error(email_cfg(plain_server.port, security="starttls"))
    assert error.permanent
    assert "server does not offer STARTTLS" in error.detail
    assert plain_server.attempts == 0


async def test_plain_sending_to_a_server_that_requires_starttls_is_permanent(
    ca: trustme.CA,
) -> None:
    with SmtpServer(tls="starttls", ca=ca) as server:
        error = await send_expecting_error(email_cfg(server.port, security="none"))
    assert error.permanent
    assert "530" in error.detail


@pytest.mark.parametrize(("tls", "security"), [("starttls", "starttls"), ("implicit", "tls")])
async def test_an_untrusted_certificate_is_a_transient_tls_error(
    ca: trustme.CA, tls: Literal["starttls", "implicit"], security: str
) -> None:
    with SmtpServer(tls=tls, ca=ca) as server:
        ctx = SmtpServer.client_context_for(trustme.CA())  # trusts some other CA only
        error = await send_expecting_error(
            email_cfg(server.port, security=security), tls_context=ctx
        )
        assert server.attempts == 0
    assert not error.permanent
    assert "TLS error: [SSL: CERTIFICATE_VERIFY_FAILED]" in error.detail


async def test_a_wrong_password_is_permanent_and_never_shown(ca: trustme.CA) -> None:
    with SmtpServer(tls="starttls", auth=(USER, PASSWORD), ca=ca) as server:
        cfg = email_cfg(server.port, security="starttls", username=USER)
        error = await send_expecting_error(
            cfg, password=WRONG_PASSWORD, tls_context=server.client_tls_context()
        )
        assert server.attempts == 0
    assert error.permanent
    assert "535" in error.detail
    assert "authentication failed" in error.detail
    assert WRONG_PASSWORD not in error.detail
    assert WRONG_PASSWORD not in repr(error)


async def test_no_auth_is_attempted_without_a_username(ca: trustme.CA) -> None:
    with SmtpServer(tls="starttls", auth=(USER, PASSWORD), ca=ca) as server:
        cfg = email_cfg(server.port, security="starttls", username="")
        error = await send_expecting_error(
            cfg, password=PASSWORD, tls_context=server.client_tls_context()
        )
    assert error.permanent  # the server insists on AUTH: 530 Authentication required
    assert "530" in error.detail


async def test_a_password_echoed_back_by_the_server_is_redacted() -> None:
    echoed: list[bytes] = []

    async def echo_credentials(line: bytes) -> bytes | None:
        if line.upper().startswith(b"AUTH"):
            echoed.append(line)
            return b"535 5.7.8 bad credentials: " + line + b" (" + PASSWORD.encode() + b")"
        if line.upper().startswith(b"EHLO"):
            return b"250-localhost\r\n250 AUTH PLAIN"
        return ordinary_reply(line)

    async with raw_smtp_server(echo_credentials) as port:
        cfg = email_cfg(port, username=USER)
        error = await send_expecting_error(cfg, password=PASSWORD)
    assert echoed, "the client did not try AUTH"
    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert blob.encode() in echoed[0]
    assert error.permanent
    assert PASSWORD not in error.detail
    assert blob not in error.detail
    assert "***" in error.detail


# ---------------------------------------------------------------- resolve_password


def test_password_file_wins_and_loses_exactly_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("from-file\n\n")
    cfg = email_cfg(25, password_file=str(path))
    env = {"SENTINEL_SMTP_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_password(cfg, env) == "from-file\n"
    path.write_text(" spaced \r\n")
    assert resolve_password(cfg, env) == " spaced "


def test_environment_password_comes_before_the_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("from-credential\n")
    cfg = email_cfg(25)
    env = {"SENTINEL_SMTP_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_password(cfg, env) == "from-env"
    del env["SENTINEL_SMTP_PASSWORD"]
    assert resolve_password(cfg, env) == "from-credential"


def test_no_password_anywhere_is_none(tmp_path: Path) -> None:
    cfg = email_cfg(25)
    assert resolve_password(cfg, {}) is None
    assert resolve_password(cfg, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None
    assert resolve_password(cfg, {"SENTINEL_SMTP_PASSWORD": ""}) is None


def test_a_missing_password_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(PasswordError, match="no such file") as info:
        resolve_password(email_cfg(25, password_file=str(path)), {"SENTINEL_SMTP_PASSWORD": "x"})
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_an_unreadable_password_file_error_never_quotes_its_content(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"s3cret-\xff-value\n")
    with pytest.raises(PasswordError) as info:
        resolve_password(email_cfg(25, password_file=str(path)), {})
    assert str(path) in str(info.value)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None
    with pytest.raises(PasswordError, match="is a directory"):
        resolve_password(email_cfg(25, password_file=str(tmp_path)), {})


# ---------------------------------------------------------------- a raw SMTP server

Reply = Callable[[bytes], Awaitable[bytes | None]]


def ordinary_reply(line: bytes) -> bytes | None:
    command = line[:4].upper()
    if command == b"EHLO":
        return b"250 localhost"
    if command == b"DATA":
        return b"354 go ahead"
    if command == b"QUIT":
        return b"221 bye"
    return b"250 OK"


@asynccontextmanager
async def raw_smtp_server(reply: Reply) -> AsyncIterator[int]:
    """A hand-written SMTP server on 127.0.0.1: greets, then answers each command line with
    `reply(line)` (None = hang up). Message data is swallowed up to the final dot."""
    sessions: dict[asyncio.Task[object], asyncio.StreamWriter] = {}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sessions[task] = writer
        try:
            writer.write(b"220 localhost raw test server\r\n")
            in_data = False
            while line := await reader.readline():
                line = line.rstrip(b"\r\n")
                if in_data:
                    if line == b".":
                        in_data = False
                        writer.write(b"250 queued\r\n")
                    continue
                answer = await reply(line)
                if answer is None:
                    break
                writer.write(answer + b"\r\n")
                in_data = answer.startswith(b"354")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # Closing a session's connection ends its loop (EOF); then wait for it to return.
        for writer in sessions.values():
            writer.close()
        if sessions:
            await asyncio.wait(sessions, timeout=5)
        await server.wait_closed()
