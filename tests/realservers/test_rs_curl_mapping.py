"""The pure parts of the curl reference (rs_curl.py): exit codes to verdicts, --connect-to
spelling, the last head of a redirect chain, certificate dates. No server, no curl: fast."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rs_curl import (
    PROTOCOL_EXITS,
    TLS_EXITS,
    Verdict,
    connect_to,
    curl_verdict,
    expiries,
    last_head,
)

from sentinel.config import SiteConfig, parse_config


def _site(**keys: object) -> SiteConfig:
    raw = {"name": "s", "url": "https://site.test/", "interval": "60s", **keys}
    return parse_config({"sites": [raw]}).sites[0]


@pytest.mark.parametrize(
    ("status", "keys", "body", "want"),
    [
        (200, {}, b"", Verdict(True, "ok", 200)),
        (404, {}, b"", Verdict(False, "status", 404)),
        (301, {"expect_status": [301]}, b"", Verdict(True, "ok", 301)),
        (200, {"body_contains": "here"}, b"it is here", Verdict(True, "ok", 200)),
        (200, {"body_contains": "here"}, b"nothing of it", Verdict(False, "body", 200)),
        (500, {"body_contains": "here"}, b"here", Verdict(False, "status", 500)),
    ],
)
def test_exit_0_is_judged_on_status_then_body(
    status: int, keys: dict[str, object], body: bytes, want: Verdict
) -> None:
    assert curl_verdict(_site(**keys), 0, "", status, body, []) == want


@pytest.mark.parametrize(
    ("code", "error", "reason"),
    [
        (6, "Could not resolve host", "dns"),
        (7, "Failed to connect: Couldn't connect to server", "connect_refused"),
        (28, "Operation timed out", "timeout"),
        (47, "Maximum (20) redirects followed", "redirects"),
        (60, "SSL certificate problem: certificate has expired", "tls"),
        (35, "tlsv1 alert internal error", "tls"),
        (56, "OpenSSL SSL_read: tlsv13 alert certificate required", "tls"),
        (56, "Recv failure: Connection reset by peer", "connect_reset"),
        (52, "Empty reply from server", "connect_reset"),
        (8, "Weird server reply", "protocol"),
        (18, "transfer closed with 10 bytes remaining to read", "protocol"),
    ],
)
def test_exit_codes_map_to_reasons(code: int, error: str, reason: str) -> None:
    # A failure before a final response carries no status, whatever curl's http_code was.
    assert curl_verdict(_site(), code, error, 302, b"", []) == Verdict(False, reason)


@given(st.integers(min_value=1, max_value=255))
def test_every_failing_exit_is_a_failure_with_a_reason(code: int) -> None:
    verdict = curl_verdict(_site(), code, "", 0, b"", [])
    assert not verdict.ok and verdict.reason and verdict.status == 0
    if code in TLS_EXITS:
        assert verdict.reason == "tls"
    if code in PROTOCOL_EXITS:
        assert verdict.reason == "protocol"


@pytest.mark.parametrize(
    ("url", "target", "want"),
    [
        ("https://site.test/", "127.0.0.1:8443", "site.test:443:127.0.0.1:8443"),
        ("https://site.test/", "127.0.0.1", "site.test:443:127.0.0.1:"),
        ("http://site.test:8080/x", "127.0.0.2:80", "site.test:8080:127.0.0.2:80"),
        ("https://site.test/", "[::1]:8443", "site.test:443:[::1]:8443"),
        ("https://site.test/", "[::1]", "site.test:443:[::1]:"),
        ("https://site.test/", "::1", "site.test:443:::1:"),
        ("https://site.test/", "backend.test:9443", "site.test:443:backend.test:9443"),
    ],
)
def test_connect_to_spelled_for_curl(url: str, target: str, want: str) -> None:
    assert connect_to(url, target) == want


def test_the_last_head_of_a_redirect_chain() -> None:
    heads = (
        "HTTP/1.1 302 Found\r\nLocation: /a\r\nX-Hop: 1\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Big: a: b\r\n\r\n"
    )
    assert last_head(heads) == [("content-type", "text/html"), ("x-big", "a: b")]
    assert last_head("") == []


def test_certificate_dates_from_curls_certinfo() -> None:
    certs = (
        "Subject:CN = leaf\nStart date:Nov 30 20:24:36 2026 GMT\n"
        "Expire date:Mar  1 20:24:36 2027 GMT\nSubject:CN = intermediate\n"
        "Expire date:Dec  4 20:24:36 2026 GMT\n"
    )
    assert expiries(certs) == [1803932676.0, 1796415876.0]
