"""The cases of the real-server suite: what to probe, what both clients should conclude, which
differences are by design (docs/real-servers.md) and which are sentinel bugs (strict xfail).

A case is a site (listener + path + site keys) probed by sentinel and by curl. `expect` is what
the case is built to show: curl must conclude it (else the server is not set up as the case
claims), and sentinel must conclude what curl did, unless the case documents a difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rs_curl import CurlRun
from rs_site import (
    BIG_HEADER,
    CHUNKED_MARK,
    EARLY_MARK,
    GZIP_MARK,
    INDEX_MARK,
    LATE_MARK,
    MANY_HEADERS,
    Site,
    closed_port,
)

# Site keys of issue 12 that another branch adds: a case using one is skipped while
# parse_config rejects it.
NEW_KEYS = ("ca_file", "client_cert", "client_key", "connect_to", "max_redirects")

Options = Callable[[Site], dict[str, object]]


def _no_options(site: Site) -> dict[str, object]:
    return {}


@dataclass(frozen=True, slots=True)
class Difference:
    """A documented, by-design difference: curl says `expect`, sentinel one of these."""

    sentinel: tuple[str, ...]
    why: str


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    listener: str
    path: str  # "{dynamic}" = the server's page without Content-Length
    expect: str = "ok"  # the reason both should give
    options: Options = _no_options  # site keys besides name and url
    url: Callable[[Site], str] | None = None  # instead of listener + path
    # Per server: a different expected reason (e.g. nginx answers a missing client
    # certificate with 400).
    expect_on: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # a feature a server may lack (WebServer.unsupported)
    # Checks that the server really sent what the case is about; None when it did.
    check: Callable[[CurlRun], str | None] | None = None
    # "leaf" / "chain": sentinel's tls_expiry must be the earliest NotAfter curl saw, and
    # the one the PKI says.
    expiry: Literal["leaf", "chain"] | None = None
    difference: Difference | None = None
    trust: Literal["context", "none"] = "context"  # the private CA via Prober(ssl_context=)


def _chunked(run: CurlRun) -> str | None:
    if (run.header("transfer-encoding") or "").lower() != "chunked":
        return f"not chunked: {run.headers}"
    return None


def _gzip(run: CurlRun) -> str | None:
    if (run.header("content-encoding") or "").lower() != "gzip":
        return f"not gzip-encoded: {run.headers}"
    return None


def _close_delimited(run: CurlRun) -> str | None:
    if run.header("content-length") is not None or run.header("transfer-encoding") is not None:
        return f"not close-delimited: {run.headers}"
    return None


def _http10(run: CurlRun) -> str | None:
    if run.http_version != "1":
        return f"answered HTTP/{run.http_version}, not HTTP/1.0"
    return None


def _big_header(run: CurlRun) -> str | None:
    value = run.header("x-big") or ""
    if len(value) < BIG_HEADER:
        return f"X-Big is {len(value)} bytes"
    return None


def _many_headers(run: CurlRun) -> str | None:
    count = sum(1 for name, _ in run.headers if name.startswith("x-many-"))
    return None if count == MANY_HEADERS else f"{count} X-Many-* fields"


def _large(run: CurlRun) -> str | None:
    return None if len(run.body) >= 2 * 1024 * 1024 else f"body of {len(run.body)} bytes"


def _body(mark: str) -> Options:
    return lambda site: {"body_contains": mark}


def _with(**extra: object) -> Options:
    return lambda site: dict(extra)


def _ca(site: Site) -> dict[str, object]:
    return {"ca_file": str(site.pki.ca)}


def _client(site: Site) -> dict[str, object]:
    pki = site.pki
    return {
        "ca_file": str(pki.ca),
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key),
        "body_contains": INDEX_MARK,
    }


def connect_to(site: Site) -> dict[str, object]:
    return {
        "ca_file": str(site.pki.ca),
        "connect_to": f"127.0.0.1:{site.ports['tls']}",
        "body_contains": INDEX_MARK,
    }


CASES: tuple[Case, ...] = (
    Case("index", "http", "/", options=_body(INDEX_MARK)),
    Case("ipv6", "http6", "/", options=_body(INDEX_MARK)),
    Case("404", "http", "/missing", expect="status"),
    Case("head", "http", "/", options=_with(method="HEAD")),
    Case("body-missing", "http", "/", expect="body", options=_body("not on the page")),
    Case("gzip", "http", "/text.txt", options=_body(GZIP_MARK), check=_gzip),
    Case(
        "chunked",
        "http",
        "{dynamic}",
        options=_body(CHUNKED_MARK),
        needs="chunked",
        check=_chunked,
    ),
    Case(
        "http10-dynamic",
        "http10",
        "{dynamic}",
        options=_body(CHUNKED_MARK),
        needs="http10",
        check=_close_delimited,
    ),
    Case(
        "http10-static",
        "http10",
        "/index.html",
        options=_body(INDEX_MARK),
        needs="http10-status",
        check=_http10,
    ),
    # Probing the wrong port: a plain request to a TLS port, a TLS handshake with a plain one.
    Case(
        "http-to-tls-port",
        "tls",
        "/",
        expect="status",
        url=lambda site: site.url("tls", "/").replace("https:", "http:"),
        expect_on={"lighttpd": "connect_reset"},  # it hangs up without a word
    ),
    Case(
        "tls-to-http-port",
        "http",
        "/",
        expect="tls",
        url=lambda site: site.url("http", "/").replace("http:", "https:"),
    ),
    Case(
        "connection-refused",
        "http",
        "/",
        expect="connect_refused",
        url=lambda site: f"http://127.0.0.1:{closed_port()}/",
    ),
    Case("301-no-follow", "http", "/moved", expect="status", options=_with(follow_redirects=False)),
    Case(
        "301-no-follow-expected",
        "http",
        "/moved",
        options=_with(follow_redirects=False, expect_status=[301]),
    ),
    Case("301-follow", "http", "/moved", options=_body(INDEX_MARK)),
    Case("redirects-5", "http", "/r/5", options=_body(INDEX_MARK)),
    Case("redirects-11", "http", "/r/11", options=_body(INDEX_MARK)),
    Case("redirects-21", "http", "/r/21", expect="redirects"),
    Case("redirects-21-max-21", "http", "/r/21", options=_with(max_redirects=21)),
    Case("redirects-5-max-4", "http", "/r/5", expect="redirects", options=_with(max_redirects=4)),
    Case("big-header-line", "http", "/bigheader", check=_big_header),
    Case("200-header-fields", "http", "/manyheaders", check=_many_headers),
    Case("large-body", "http", "/big.txt", check=_large),
    Case("large-body-text-early", "http", "/big.txt", options=_body(EARLY_MARK), check=_large),
    Case(
        "large-body-text-late",
        "http",
        "/big.txt",
        options=_body(LATE_MARK),
        check=_large,
        difference=Difference(
            ("body_too_large", "body"),
            "sentinel reads at most max_body_bytes (1 MiB by default) of a body; the text is "
            "after that, so the check fails; curl reads everything",
        ),
    ),
    Case("tls", "tls", "/", options=_body(INDEX_MARK), expiry="leaf"),
    Case("tls-expired", "tls_expired", "/", expect="tls"),
    Case("tls-expired-no-verify", "tls_expired", "/", options=_with(tls_verify=False)),
    Case("tls-expiring", "tls_expiring", "/", expiry="leaf"),
    Case("tls-wrong-host", "tls_wrong_host", "/", expect="tls"),
    Case("tls-self-signed", "tls_self_signed", "/", expect="tls"),
    Case("tls-intermediate-expiring", "tls_intermediate", "/", expiry="chain"),
    # nginx completes the handshake and answers 400; the others end it with a TLS alert.
    Case("tls-client-cert-missing", "tls_client", "/", expect="tls", expect_on={"nginx": "status"}),
    Case("tls-client-cert", "tls_client", "/", options=_client, trust="none"),
    Case(
        "ca-file",
        "tls",
        "/",
        options=lambda site: {**_ca(site), "body_contains": INDEX_MARK},
        trust="none",
    ),
    Case(
        "connect-to",
        "tls",
        "/",
        options=connect_to,
        url=lambda site: "https://site.test/",
        trust="none",
    ),
)

# Cases where sentinel disagrees with curl because of a sentinel bug: (case, server or "*") ->
# the bug. Strict xfail: when the fix lands, the entry must go.
# Found here, also listed in issue 12 ("10 of 82 cases disagree").
_LLHTTP = "the probe-llhttp branch (issue 12) fixes it"
_CONNECT = "the probe-connect branch (issue 12) fixes it"
# Cases where sentinel disagrees with curl because of a sentinel bug (strict xfail, so a fix
# shows up as a failure until its entry is removed). Issue 12's list was fixed by the llhttp
# probe and the connection rework; none is known now.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def known_bug(case: Case, server: str) -> str | None:
    return KNOWN_BUGS.get((case.id, server)) or KNOWN_BUGS.get((case.id, "*"))
