"""The email channel against real SMTP servers on loopback: the `[email]` options tls_verify,
ca_file and helo_name, and a late delivery that says so."""

from __future__ import annotations

import time
from dataclasses import replace
from email.policy import SMTP
from pathlib import Path

import pytest
import trustme

from sentinel.config import EmailConfig
from sentinel.notify.channels.base import Delivery, SetupError
from sentinel.notify.channels.email import EmailChannel
from sentinel.notify.errors import SendError
from smtp_server import SmtpServer
from test_smtp import alert, ordinary_reply, raw_smtp_server

pytestmark = pytest.mark.slow


def cfg(port: int, **overrides: object) -> EmailConfig:
    base = EmailConfig(
        sender="sentinel <sentinel@example.org>",
        recipients=("owner@example.org",),
        smtp_host="127.0.0.1",
        smtp_port=port,
        security="none",
        timeout=10.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def delivery(config: EmailConfig, *, age: float = 0.0) -> Delivery:
    now = time.time()
    return Delivery(
        channel="email",
        kind="down",
        site="blog",
        created_at=now - age,
        message=alert(config).as_bytes(policy=SMTP),
        alert=None,
        now=now,
    )


async def test_ca_file_trusts_a_private_ca_for_starttls(tmp_path: Path) -> None:
    ca = trustme.CA()
    with SmtpServer(tls="starttls", ca=ca) as server:
        bundle = server.write_ca_bundle(tmp_path / "ca.pem")
        config = cfg(server.port, security="starttls", ca_file=str(bundle))
        await EmailChannel.from_config(config, {}).send(delivery(config))
        [mail] = await server.wait_for(1, timeout=20)
    assert mail.tls


async def test_an_untrusted_certificate_fails_unless_tls_verify_is_off() -> None:
    with SmtpServer(tls="starttls", ca=trustme.CA()) as server:
        strict = cfg(server.port, security="starttls")
        with pytest.raises(SendError) as info:
            await EmailChannel.from_config(strict, {}).send(delivery(strict))
        assert not info.value.permanent and "certificate" in info.value.detail.lower()
        lax = cfg(server.port, security="starttls", tls_verify=False)
        await EmailChannel.from_config(lax, {}).send(delivery(lax))
        [mail] = await server.wait_for(1, timeout=20)
    assert mail.tls


def test_an_unreadable_ca_file_is_a_one_line_setup_error(tmp_path: Path) -> None:
    config = cfg(25, security="starttls", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(SetupError) as info:
        EmailChannel.from_config(config, {})
    assert str(info.value).startswith("email: ca_file: ")
    assert "\n" not in str(info.value)


async def test_helo_name_is_the_ehlo_name() -> None:
    greetings: list[bytes] = []

    async def record(line: bytes) -> bytes | None:
        if line[:4].upper() in (b"EHLO", b"HELO"):
            greetings.append(line.strip())
        return ordinary_reply(line)

    async with raw_smtp_server(record) as port:
        config = cfg(port, helo_name="vps.example.org")
        await EmailChannel.from_config(config, {}).send(delivery(config))
    assert greetings[0] == b"EHLO vps.example.org"


async def test_an_email_delivered_late_says_so() -> None:
    with SmtpServer() as server:
        config = cfg(server.port)
        channel = EmailChannel.from_config(config, {})
        await channel.send(delivery(config, age=2 * 3600 + 300))
        await channel.send(delivery(config, age=5))
        late, on_time = await server.wait_for(2, timeout=20)
    body = late.message.get_body(("plain",))
    assert body is not None
    assert body.get_content().startswith("Delivered late: this alert was raised 2h 5m before")
    assert late.message["X-Sentinel-Delivered-Late"] == "yes"
    assert str(late.message["Subject"]).startswith("[sentinel] DOWN: blog")
    assert on_time.message["X-Sentinel-Delivered-Late"] is None
