"""`[sentinel] web_config`: the exporter-toolkit web config, parsed (pure), loaded (real files),
and applied by the real HTTP server on loopback (TLS from trustme, real bcrypt hashes)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from sentinel.web import Reply, WebServer
from sentinel.webauth import (
    BasicAuth,
    CheckCache,
    WebAccess,
    WebConfigError,
    basic_credentials,
    is_open_path,
    load_web_access,
    local_client_context,
    parse_web_config,
)

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


# ---------------------------------------------------------------- parsing (pure)


def test_a_full_config_parses_with_paths_relative_to_its_directory() -> None:
    settings = parse_web_config(
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "/abs/server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "ca.pem",
                "client_allowed_sans": ["prometheus.example.org"],
                "min_version": "TLS13",
            },
            "http_server_config": {"http2": False, "headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"prometheus": HASH},
        },
        "/etc/sentinel",
    )
    assert settings.tls is not None
    assert settings.tls.cert_file == "/etc/sentinel/server.crt"
    assert settings.tls.key_file == "/abs/server.key"
    assert settings.tls.client_ca_file == "/etc/sentinel/ca.pem"
    assert settings.tls.verify_mode is ssl.CERT_REQUIRED
    assert settings.tls.min_version is ssl.TLSVersion.TLSv1_3
    assert settings.users == {"prometheus": HASH.encode()}
    assert settings.headers == (("X-Frame-Options", "deny"),)


def test_an_empty_file_means_plain_http_and_no_auth() -> None:
    assert parse_web_config(None, "/") == parse_web_config({"tls_server_config": {}}, "/")
    assert parse_web_config(None, "/").tls is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"tls_server_config": {"cert_file": "a"}}, "cert_file and key_file are both required"),
        ({"tls_server_config": {"cert": "PEM", "key_file": "k"}}, "use cert_file"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["X"]}},
            "cipher_suites",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS9"}},
            "min_version",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            "above max_version",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequestClientCert",
                }
            },
            "not supported",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "needs client_ca_file",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "c"}},
            "without a client_auth_type",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "typo": 1}},
            "tls_server_config.typo: unknown key",
        ),
        ({"basic_auth_users": {"p": "plaintext"}}, "basic_auth_users.p: not a bcrypt hash"),
        ({"basic_auth_users": {"a:b": HASH}}, "cannot contain ':'"),
        ({"rate_limit": {"interval": "1s", "burst": 2}}, "rate_limit: not supported"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "cannot be configured"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}}, "one of deny"),
        ({"basic_auth": {}}, ".basic_auth: unknown key"),
        (["a list"], "must be a mapping"),
    ],
)
def test_what_sentinel_cannot_honour_is_a_one_line_error(document: Any, message: str) -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(document, "/etc/sentinel")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_only_healthz_and_the_pings_are_open() -> None:
    assert is_open_path("/healthz")
    assert is_open_path("/healthz?x=1")
    assert is_open_path("/ping/backup/start?token=t")
    for path in ("/", "/metrics", "/api/status", "/badge/a/status.svg", "/sites/a", "/healthzz"):
        assert not is_open_path(path)


def _head(authorization: str | None) -> bytes:
    fields = b"" if authorization is None else f"Authorization: {authorization}\r\n".encode()
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"


def test_basic_credentials_are_read_from_the_head() -> None:
    token = base64.b64encode(b"user:pa:ss").decode()
    assert basic_credentials(_head(f"Basic {token}")) == ("user", "pa:ss")
    assert basic_credentials(_head(f"basic {token}")) == ("user", "pa:ss")
    assert basic_credentials(_head(None)) is None
    assert basic_credentials(_head("Bearer abc")) is None
    assert basic_credentials(_head("Basic !!!")) is None
    assert basic_credentials(_head(f"Basic {base64.b64encode(b'nocolon').decode()}")) is None


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=3), st.floats(0, 200)), max_size=200),
    st.integers(1, 16),
)
def test_the_check_cache_stays_bounded_and_forgets_after_its_ttl(
    puts: list[tuple[bytes, float]], size: int
) -> None:
    now = [0.0]
    cache = CheckCache(ttl=60.0, size=size, clock=lambda: now[0])
    for key, advance in puts:
        now[0] += advance
        cache.put(key, True)
        assert len(cache) <= size
        assert cache.get(key) is True
    now[0] += 60.0
    assert all(cache.get(key) is None for key, _ in puts)


async def test_basic_auth_checks_bcrypt_once_then_uses_the_cache() -> None:
    now = [0.0]
    auth = BasicAuth({"prometheus": HASH.encode()}, ttl=60.0, clock=lambda: now[0])
    assert await auth.allows(("prometheus", "s3cret"))
    assert await auth.allows(("prometheus", "s3cret"))
    assert auth.checks == 1
    assert not await auth.allows(("prometheus", "wrong"))
    assert not await auth.allows(("nobody", "s3cret"))  # checked against a dummy hash
    assert not await auth.allows(None)
    now[0] += 61.0
    assert await auth.allows(("prometheus", "s3cret"))
    assert auth.checks == 4


# ---------------------------------------------------------------- loading real files


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_dir(tmp_path: Path, ca: trustme.CA) -> Path:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    for blob in cert.cert_chain_pems[1:]:
        with (tmp_path / "server.crt").open("ab") as f:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return tmp_path


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_valid_file_gives_a_tls_context_and_auth(tls_dir: Path) -> None:
    path = write(
        tls_dir / "web.yml",
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    access = load_web_access(path)
    assert access.ssl_context is not None
    assert access.auth is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: [\n", "web.yml: "),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
            "cannot load cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
            "cannot load cert_file",
        ),
        ("basic_auth_users:\n  p: x\n", "basic_auth_users.p: not a bcrypt hash"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tls_dir: Path, text: str, message: str) -> None:
    path = write(tls_dir / "web.yml", text)
    with pytest.raises(WebConfigError) as info:
        load_web_access(path)
    assert str(info.value).startswith(f"web_config {path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"^web_config .*nope.yml: cannot read it"):
        load_web_access(str(tmp_path / "nope.yml"))


# ---------------------------------------------------------------- the real server (both loops)

ROUTES = {
    "/healthz": lambda: Reply(200, "text/plain; charset=utf-8", b"ok\n"),
    "/metrics": lambda: Reply(200, "text/plain; version=0.0.4", b"up 1\n"),
}


async def _ping(
    method: str, target: str, head: bytes, reader: asyncio.StreamReader
) -> tuple[int, str]:
    return 200, "pong"


@pytest.fixture
async def tls_server(tls_dir: Path) -> AsyncIterator[tuple[WebServer, int, Path]]:
    path = write(
        tls_dir / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    srv = WebServer(
        ROUTES, prefixed={"/ping/": _ping}, access=load_web_access(path), request_timeout=5.0
    )  # type: ignore[arg-type]
    port = await srv.start("127.0.0.1:0")
    yield srv, port, tls_dir
    await srv.close()


def client_context(tls_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))


async def get(
    port: int,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one request."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None
    )
    try:
        fields = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if auth is not None:
            fields += (
                f"Authorization: Basic {base64.b64encode(':'.join(auth).encode()).decode()}\r\n"
            )
        writer.write((fields + "\r\n").encode())
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


async def test_tls_with_basic_auth_guards_all_but_healthz_and_pings(
    tls_server: tuple[WebServer, int, Path],
) -> None:
    _srv, port, tls_dir = tls_server
    ctx = client_context(tls_dir)
    status, head, _ = await get(port, "/metrics", context=ctx)
    assert status == 401
    assert b'WWW-Authenticate: Basic realm="sentinel"' in head
    assert b"X-Frame-Options: deny" in head
    assert (await get(port, "/metrics", auth=("prometheus", "wrong"), context=ctx))[0] == 401
    assert (await get(port, "/metrics", auth=("other", "s3cret"), context=ctx))[0] == 401
    status, head, body = await get(port, "/metrics", auth=("prometheus", "s3cret"), context=ctx)
    assert (status, body) == (200, b"up 1\n")
    assert b"X-Frame-Options: deny" in head
    assert (await get(port, "/healthz", context=ctx))[0] == 200
    assert (await get(port, "/ping/backup", context=ctx))[0] == 200
    assert (await get(port, "/nothing-here", context=ctx))[0] == 401  # no hint what exists


async def test_plain_http_on_the_tls_port_is_dropped_and_the_server_carries_on(
    tls_server: tuple[WebServer, int, Path],
) -> None:
    _srv, port, tls_dir = tls_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    async with asyncio.timeout(10):
        assert b"200 OK" not in await reader.read()
    writer.close()
    assert (await get(port, "/healthz", context=client_context(tls_dir)))[0] == 200


async def test_a_new_access_applies_to_the_next_connections(
    tls_server: tuple[WebServer, int, Path],
) -> None:
    srv, port, tls_dir = tls_server
    tls_access = srv.access
    await srv.set_access(WebAccess())  # a reload to a web config without TLS or users
    assert (await get(port, "/metrics"))[0] == 200
    await srv.set_access(tls_access)  # and back: the same port now speaks TLS again
    assert (await get(port, "/healthz", context=client_context(tls_dir)))[0] == 200
    assert (await get(port, "/metrics", context=client_context(tls_dir)))[0] == 401


async def test_a_client_certificate_can_be_required(tls_dir: Path, ca: trustme.CA) -> None:
    path = write(
        tls_dir / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: [prometheus.example.org]\n",
    )
    srv = WebServer(ROUTES, access=load_web_access(path), request_timeout=5.0)  # type: ignore[arg-type]
    port = await srv.start("127.0.0.1:0")
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, ValueError, IndexError)):
            await get(port, "/metrics", context=client_context(tls_dir))
        allowed = client_context(tls_dir)
        ca.issue_cert("prometheus.example.org").configure_cert(allowed)
        assert (await get(port, "/metrics", context=allowed))[0] == 200
        other = client_context(tls_dir)
        ca.issue_cert("someone.example.org").configure_cert(other)
        with pytest.raises((ssl.SSLError, ConnectionError, ValueError, IndexError)):
            await get(port, "/metrics", context=other)
    finally:
        await srv.close()


async def test_sentinel_ping_trusts_the_served_certificate_whatever_its_name(
    tmp_path: Path, ca: trustme.CA
) -> None:
    # A certificate for a public name only; the ping goes to 127.0.0.1. The job's user can read
    # the certificate but need not read the key: only cert_file is opened.
    ca.issue_cert("sentinel.example.org").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "both.pem")
    )
    path = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: both.pem\n  key_file: both.pem\n",
    )
    srv = WebServer(ROUTES, access=load_web_access(path), request_timeout=5.0)  # type: ignore[arg-type]
    port = await srv.start("127.0.0.1:0")
    try:
        context = local_client_context(path)
        assert context is not None
        assert (await get(port, "/healthz", context=context))[0] == 200
        with pytest.raises(ssl.SSLError):  # the system trust store does not know this CA
            await get(port, "/healthz", context=ssl.create_default_context())
    finally:
        await srv.close()
    assert local_client_context(write(tmp_path / "plain.yml", "basic_auth_users: {}\n")) is None
    with pytest.raises(WebConfigError, match=r"plain\.yml"):
        local_client_context(write(tmp_path / "plain.yml", "tls_server_config: [\n"))


_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_keys = st.sampled_from(
    [
        "tls_server_config",
        "http_server_config",
        "basic_auth_users",
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "client_allowed_sans",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
        "headers",
        "http2",
        "X-Frame-Options",
        "prometheus",
    ]
) | st.text(max_size=5)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


_tls_keys = [
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_ca",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "cipher_suites",
]
_values = _documents | st.sampled_from(
    ["TLS12", "TLS13", "RequireAndVerifyClientCert", "NoClientCert", "a.pem", HASH, "deny"]
)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "tls_server_config": st.fixed_dictionaries({}, optional={k: _values for k in _tls_keys}),
        "http_server_config": st.fixed_dictionaries(
            {},
            optional={
                "http2": _values,
                "headers": st.dictionaries(st.sampled_from(["X-Frame-Options", "Server"]), _values),
            },
        ),
        "basic_auth_users": st.dictionaries(st.text(max_size=4), _values, max_size=2),
    },
)


# TLS on (cert_file and key_file set), every other key anything, often a list or a mapping.
_odd = st.lists(_scalars, min_size=1, max_size=2) | st.dictionaries(
    st.text(max_size=3), _scalars, min_size=1, max_size=2
)
_tls_on = st.fixed_dictionaries(
    {
        "tls_server_config": st.fixed_dictionaries(
            {"cert_file": st.just("a.pem"), "key_file": st.just("a.key")},
            optional={k: _odd | _values for k in _tls_keys[2:]},
        )
    }
)


@given(_documents | _shaped | _tls_on)
def test_any_yaml_document_is_settings_or_a_one_line_error(document: Any) -> None:
    try:
        parse_web_config(document, "/etc/sentinel")
    except WebConfigError as exc:
        assert "\n" not in str(exc)
