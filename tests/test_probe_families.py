"""The families of issue 12 as named cases, each against a real loopback server.

2  big heads: 64 KiB heads with no per-line limit below that, 1,000 fields, interim responses
   with long lines (once quadratic), the head limit itself;
3  work bounded by bytes read: bodies that inflate to nothing (an endless gzip comment field,
   empty deflate blocks, huge chunk extensions) stop at the byte bound, not the timeout;
4  multi-member gzip decoded fully; truncated or corrupt gzip/deflate bodies fail;
5  framing: redirect to port 0, status 000 (the rest of family 5 is in
   test_probe_differential.py); plus a body check that passes within max_body_bytes, and a
   fault inside a protocol callback failing the probe at once.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import sentinel.probes.response
from sentinel.config import ConfigError, parse_config
from sentinel.probes.base import kinds
from sentinel.probes.lean import LeanHttpProber
from sentinel.probes.prober import Prober
from sentinel.probes.response import HEAD_LIMIT, MAX_HEADER_FIELDS, read_limit
from sentinel.probes.result import ProbeResult
from test_probe_http import RawServe, assert_clean, raw_server, site

__all__ = ["raw_server"]

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
LIMIT = 64 * 1024  # max_body_bytes of the sites here: the byte bound is 4 x this + 64 KiB


@pytest.fixture
async def prober() -> AsyncIterator[LeanHttpProber]:
    async with LeanHttpProber(user_agent="sentinel-test/1") as p:
        yield p


def reply(data: bytes) -> Callable[[Reader, Writer], Any]:
    async def handler(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        await reader.read()

    return handler


def endless(head: bytes, first: bytes, frame: bytes) -> Callable[[Reader, Writer], Any]:
    """Sends `head`, `first`, then `frame` until the prober hangs up; counts what it wrote."""

    async def handler(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + first)
        while True:
            writer.write(frame)
            await writer.drain()

    return handler


async def probe(
    prober: LeanHttpProber,
    raw_server: RawServe,
    handler: Callable[[Reader, Writer], Any],
    **kw: Any,
) -> ProbeResult:
    port = await raw_server(handler)
    kw.setdefault("timeout", 20.0)
    return await prober.probe(site(f"http://127.0.0.1:{port}/", **kw))


def response(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


OK = b"HTTP/1.1 200 OK\r\n"


# ------------------------------------------------------------------ family 2: heads


@pytest.mark.parametrize(
    "fields",
    [
        [b"Content-Security-Policy: " + b"c" * (HEAD_LIMIT - 200)],  # one 64 KiB line
        [b"Link: <" + b"l" * 20_000 + b">; rel=preload"] * 3,
        [b"X-Field-%d: v" % i for i in range(500)],
        [b"X-F%d: v" % i for i in range(MAX_HEADER_FIELDS - 1)],
    ],
    ids=["one 64 KiB line", "three 20 KB Link lines", "500 fields", "1,000 fields"],
)
async def test_big_heads_that_real_sites_send_are_accepted(
    prober: LeanHttpProber, raw_server: RawServe, fields: list[bytes]
) -> None:
    head = OK + b"".join(f + b"\r\n" for f in fields)
    assert len(head) < HEAD_LIMIT
    result = await probe(
        prober, raw_server, reply(response(head, b"the needle")), body_contains="needle"
    )
    assert (result.ok, result.status) == (True, 200), result


async def test_a_head_over_64_kib_is_a_protocol_failure(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    head = OK + b"X-Big: " + b"b" * HEAD_LIMIT + b"\r\n"
    result = await probe(prober, raw_server, reply(response(head, b"")))
    assert (result.reason, result.message) == (
        "protocol",
        "malformed response: response headers too large",
    ), result


async def test_more_header_fields_than_the_limit_is_a_protocol_failure(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    head = OK + b"".join(b"X%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS + 1))
    result = await probe(prober, raw_server, reply(response(head, b"")))
    assert (result.reason, result.status) == ("protocol", 0), result
    assert f"more than {MAX_HEADER_FIELDS} headers" in result.message


async def test_interim_responses_with_long_whitespace_lines_are_read(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    """Once a quadratic regex: 1xx heads with 8 KB lines of whitespace froze the loop ~1 s
    (llhttp reads them in one pass)."""
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: a" + b" " * 8000 + b"b\r\n\r\n"
    data = interim * 20 + response(OK, b"needle")
    result = await probe(prober, raw_server, reply(data), body_contains="needle")
    assert (result.ok, result.status) == (True, 200), result


# ------------------------------------------------------------------ family 3: bytes read


def gzip_with_endless_comment() -> tuple[bytes, bytes]:
    """A gzip header with FCOMMENT set, then comment bytes forever (never a NUL)."""
    return b"\x1f\x8b\x08\x10\x00\x00\x00\x00\x00\x03", b"c" * 65536


def empty_deflate_blocks() -> tuple[bytes, bytes]:
    """Raw deflate: stored blocks of length 0 (not final) forever, inflating to nothing."""
    return b"", b"\x00\x00\x00\xff\xff" * 13107


@pytest.mark.parametrize(
    ("name", "head", "stream"),
    [
        (
            "endless gzip comment",
            OK + b"Content-Encoding: gzip\r\n\r\n",
            gzip_with_endless_comment(),
        ),
        (
            "empty deflate blocks",
            OK + b"Content-Encoding: deflate\r\n\r\n",
            empty_deflate_blocks(),
        ),
        (
            "huge chunk extension",
            OK + b"Transfer-Encoding: chunked\r\n\r\n",
            (b"5;ext=", b"e" * 65536),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
@pytest.mark.parametrize("body_check", [False, True])
async def test_a_body_that_inflates_to_nothing_stops_at_the_byte_bound(
    prober: LeanHttpProber,
    raw_server: RawServe,
    name: str,
    head: bytes,
    stream: tuple[bytes, bytes],
    body_check: bool,
) -> None:
    first, frame = stream
    check: dict[str, Any] = {"body_contains": "needle"} if body_check else {}
    result = await probe(
        prober, raw_server, endless(head, first, frame), max_body_bytes=LIMIT, **check
    )
    # Stopped by the bound, long before the 20 s timeout.
    assert result.reason == ("body_too_large" if body_check else "ok"), result
    assert result.status == 200
    if body_check:
        assert f"more than {read_limit(LIMIT)} bytes read" in result.message, result
    assert_clean(result.message)


# ------------------------------------------------------------------ family 4: decoding


async def test_multi_member_gzip_is_decoded_fully(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    body = gzip.compress(b"first member " * 50, mtime=0) + gzip.compress(
        b"and the needle in the second", mtime=0
    )
    head = OK + b"Content-Encoding: gzip\r\n"
    result = await probe(prober, raw_server, reply(response(head, body)), body_contains="needle")
    assert (result.ok, result.status) == (True, 200), result


async def test_gzip_with_zero_padding_after_the_member_is_accepted(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    body = gzip.compress(b"the needle", mtime=0) + b"\x00" * 16
    head = OK + b"Content-Encoding: gzip\r\n"
    result = await probe(prober, raw_server, reply(response(head, body)), body_contains="needle")
    assert result.ok, result


async def test_an_empty_body_labelled_gzip_is_no_truncated_stream(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    head = OK + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    result = await probe(prober, raw_server, reply(head))
    assert result.ok, result


def deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


TEXT = b"the needle is here " * 400

BROKEN_BODIES = {
    "truncated gzip": (b"gzip", gzip.compress(TEXT, mtime=0)[:-30]),
    "gzip without its trailer": (b"gzip", gzip.compress(TEXT, mtime=0)[:-8]),
    "corrupt gzip": (b"gzip", gzip.compress(TEXT, mtime=0)[:40] + b"\xff" * 40),
    "truncated deflate": (b"deflate", deflate(TEXT, 15)[:-10]),
    "truncated raw deflate": (b"deflate", deflate(TEXT, -15)[:-10]),
    "corrupt deflate": (b"deflate", b"\x78\x9c" + b"\xff" * 50),
    "garbage after gzip": (b"gzip", gzip.compress(TEXT, mtime=0) + b"garbage"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_BODIES))
@pytest.mark.parametrize("body_check", [False, True])
async def test_a_truncated_or_corrupt_compressed_body_is_a_protocol_failure(
    prober: LeanHttpProber, raw_server: RawServe, case: str, body_check: bool
) -> None:
    """Never judged on the part that could be decoded: the needle is in that part."""
    encoding, body = BROKEN_BODIES[case]
    head = OK + b"Content-Encoding: " + encoding + b"\r\n"
    check: dict[str, Any] = {"body_contains": "needle"} if body_check else {}
    result = await probe(prober, raw_server, reply(response(head, body)), **check)
    assert (result.reason, result.status) == ("protocol", 200), result
    assert result.message.startswith("incomplete or malformed response body"), result
    assert_clean(result.message)


async def test_a_truncated_gzip_body_without_framing_is_a_failure_at_the_close(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    async def close_early(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK + b"Content-Encoding: gzip\r\n\r\n" + gzip.compress(TEXT, mtime=0)[:-20])
        await writer.drain()

    result = await probe(prober, raw_server, close_early, body_contains="needle")
    assert (result.reason, result.message) == (
        "protocol",
        "incomplete or malformed response body: compressed body truncated",
    ), result


# ------------------------------------------------------------------ body checks and the limit


async def test_a_body_check_passes_on_a_match_within_max_body_bytes(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    """The old probe failed a body over the limit even when the text was inside it."""
    body = b"x" * 1000 + b"needle" + b"y" * (3 * LIMIT)
    for check in ({"body_contains": "needle"}, {"body_regex": "nee+dle"}):
        result = await probe(
            prober, raw_server, reply(response(OK, body)), max_body_bytes=LIMIT, **check
        )
        assert (result.ok, result.status) == (True, 200), (check, result)
    missing = await probe(
        prober,
        raw_server,
        reply(response(OK, b"z" * (2 * LIMIT))),
        max_body_bytes=LIMIT,
        body_contains="needle",
    )
    assert (missing.reason, missing.status) == ("body_too_large", 200), missing
    assert f"does not contain 'needle' in its first {LIMIT} bytes" in missing.message


async def test_reading_stops_as_soon_as_body_contains_matches(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    """An endless body with the text early on: the probe ends there, not at the limit."""
    written: list[int] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK + b"Transfer-Encoding: chunked\r\n\r\n")
        frame = b"%x\r\n%s\r\n" % (4096, b"n" * 4090 + b"needle")
        sent = 0
        while True:
            writer.write(frame)
            sent += len(frame)
            written.append(sent)
            await writer.drain()

    result = await probe(
        prober, raw_server, handler, max_body_bytes=16 * 1024 * 1024, body_contains="needle"
    )
    assert (result.ok, result.status) == (True, 200), result
    assert written[-1] < 8 * 1024 * 1024  # far from the 16 MiB limit


# ------------------------------------------------------------------ family 5: the rest


async def test_status_000_is_a_protocol_failure(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    result = await probe(
        prober, raw_server, reply(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n")
    )
    assert (result.reason, result.status, result.message) == (
        "protocol",
        0,
        "malformed response: bad status code 000",
    ), result


async def test_a_redirect_to_port_0_is_a_failure(
    prober: LeanHttpProber, raw_server: RawServe
) -> None:
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:0/x\r\nContent-Length: 0\r\n\r\n"
    result = await probe(prober, raw_server, reply(redirect))
    assert (result.reason, result.status) == ("redirects", 0), result
    assert "invalid or non-HTTP location" in result.message


# ------------------------------------------------------------------ a fault in a callback


async def test_a_fault_in_a_protocol_callback_fails_the_probe_at_once(
    prober: LeanHttpProber, raw_server: RawServe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at the timeout: the protocol catches what it did not expect, reason "error"."""

    def broken(self: object, *args: object) -> None:
        raise RuntimeError("a bug")

    port = await raw_server(reply(response(OK, b"fine")))
    for name in ("on_header", "on_headers_complete", "on_body", "_accept", "on_message_complete"):
        with monkeypatch.context() as patch:
            patch.setattr(sentinel.probes.response.ResponseProtocol, name, broken)
            started = time.perf_counter()
            result = await prober.probe(site(f"http://127.0.0.1:{port}/", timeout=30.0))
        assert time.perf_counter() - started < 10, name  # not the 30 s timeout
        assert (result.reason, result.message) == (
            "error",
            "internal error: RuntimeError: a bug",
        ), (name, result)


# ------------------------------------------------------------------ the registry, the config


def test_every_url_scheme_of_the_config_has_its_probe_kind() -> None:
    from sentinel.config import URL_SCHEMES

    registered = kinds()
    assert set(registered) == set(URL_SCHEMES.values())
    for scheme, kind in URL_SCHEMES.items():
        assert scheme in registered[kind].schemes


CONFIG = """
[defaults]
max_redirects = 5
[[sites]]
name = "web"
url = "http://127.0.0.1:{port}/"
[[sites]]
name = "port"
url = "tcp://127.0.0.1:{port}"
[[sites]]
name = "legacy"
tcp = "127.0.0.1:{port}"
max_redirects = 0
"""


async def test_a_tcp_url_is_probed_by_the_tcp_kind(raw_server: RawServe) -> None:
    import tomllib

    port = await raw_server(reply(response(OK, b"")))
    config = parse_config(tomllib.loads(CONFIG.format(port=port)))
    web, tcp_url, legacy = config.sites
    assert (web.kind, tcp_url.kind, legacy.kind) == ("http", "tcp", "tcp")
    assert tcp_url.target == legacy.target == f"127.0.0.1:{port}"
    assert (web.max_redirects, legacy.max_redirects) == (5, 0)
    async with Prober() as prober:
        results = [await prober.probe(s) for s in config.sites]
    assert [r.reason for r in results] == ["ok", "ok", "ok"], results
    assert results[1].message == f"connected to 127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("site_toml", "error"),
    [
        ('url = "tcp://127.0.0.1"', "invalid tcp URL"),
        ('url = "tcp://127.0.0.1:80/path"', "use tcp://HOST:PORT"),
        ('url = "tcp://127.0.0.1:80"\nbody_contains = "x"', "need an HTTP check"),
        ('url = "ftp://127.0.0.1/"', "must start with http://, https:// or tcp://"),
        ('url = "http://x/"\nmax_redirects = -1', "max_redirects"),
        ('url = "http://x/"\nmax_redirects = 101', "max_redirects"),
    ],
)
def test_bad_tcp_urls_and_redirect_limits_are_one_line_errors(site_toml: str, error: str) -> None:
    import tomllib

    text = f'[[sites]]\nname = "s"\n{site_toml}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(text))
    message = str(caught.value)
    assert error in message, message
    assert 'sites[0] "s"' in message, message
