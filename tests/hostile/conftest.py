"""Fixtures of the hostile suite: the misbehaving servers (one set per session, shared by the
modules that point sites at them) and the certificates they present."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from hostile_server import Hostile, HostileServer, bomb


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def _self_signed_context(tmp: Path) -> ssl.SSLContext:
    # A CA certificate is self-signed: present one that no client trusts as the server's own.
    stranger = trustme.CA(organization_name="nobody trusts me")
    cert, key = tmp / "self-signed.pem", tmp / "self-signed.key"
    stranger.cert_pem.write_to_path(str(cert))
    stranger.private_key_pem.write_to_path(str(key))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    tmp = tmp_path_factory.mktemp("hostile-tls")
    bomb("gzip"), bomb("deflate")  # compress once, before any timing starts
    ca = trustme.CA()
    expired_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    servers = {
        "plain": HostileServer(),
        "other_host": HostileServer(host="127.0.0.2"),
        "tls_ok": HostileServer(ssl_context=_server_context(ca.issue_cert("127.0.0.1"))),
        "tls_self_signed": HostileServer(ssl_context=_self_signed_context(tmp)),
        "tls_wrong_host": HostileServer(
            ssl_context=_server_context(ca.issue_cert("other.example"))
        ),
        "tls_expired": HostileServer(
            ssl_context=_server_context(
                ca.issue_cert(
                    "127.0.0.1",
                    not_before=expired_at - dt.timedelta(days=90),
                    not_after=expired_at,
                )
            )
        ),
        "tls_stall": HostileServer(fixed="tcp-silent"),
    }
    started: list[HostileServer] = []
    try:
        for server in servers.values():
            started.append(server.start())
        bundle = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        yield Hostile(**servers, ca=ca, ca_bundle=bundle)
    finally:
        for server in started:
            server.stop()
