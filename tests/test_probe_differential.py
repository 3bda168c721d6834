"""Differential tests of the probe's response reader against two independent parsers.

A generated corpus (hypothesis) of responses, well-formed and mutated, is read by
`ResponseProtocol` whole, cut at every split point and fed byte by byte, and compared with:

- llhttp in strict mode, driven directly through httptools (no leniency flag set), plus the two
  rules the probe adds on top (a status below 100 and a Transfer-Encoding other than plain
  `chunked` are errors, as h11 and aiohttp have them): the verdict and, when it is a response,
  the status and the body must be the same;
- h11: whatever the probe accepts, h11 accepts too, with the same status and body.

No network here: the bytes go straight into the protocol, as a transport would hand them over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import h11
import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.probes.response import ResponseProtocol

Verdict = tuple[str, int, bytes]  # ("ok", status, body) or ("error", 0, b"")
ERROR: Verdict = ("error", 0, b"")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()  # for the futures only: nothing runs on it
    yield loop
    loop.close()


# ------------------------------------------------------------------ the three readers


def probe_reads(loop: asyncio.AbstractEventLoop, pieces: list[bytes]) -> Verdict:
    conn = ResponseProtocol(
        loop.create_future(),
        limit=1024 * 1024,
        keep_body=lambda status: True,
        head_request=False,
        follow_redirects=False,
    )
    for piece in pieces:
        conn.data_received(piece)
    conn.eof_received()  # the server closes after its response
    assert conn.finished
    if conn.error is not None:
        assert conn.error[0] in ("protocol", "connect_reset"), conn.error
        return ERROR
    return ("ok", conn.status, bytes(conn.body))


class _Recorder:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.head_done = False
        self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        if not self.complete:  # (llhttp begins another message on bytes after the response)
            self.headers = []
            self.body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return
        self.status = status
        self.head_done = True

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True


def llhttp_reads(data: bytes) -> Verdict:
    """llhttp strict, as the reference; the end of the data is the server's close."""
    rec = _Recorder()
    try:
        rec.parser.feed_data(data)
    except httptools.HttpParserError:
        if not rec.complete:  # (bytes after a complete response are not the response's)
            return ERROR
    if not rec.head_done:
        return ERROR
    names = {name for name, _ in rec.headers}
    te = [value for name, value in rec.headers if name == b"transfer-encoding"]
    if not rec.complete and (b"content-length" in names or te):
        return ERROR  # cut short: only a body without framing ends at the close
    # The probe's own rules on top of llhttp.
    if rec.status < 100:
        return ERROR
    if te and [c.strip(b" \t").lower() for c in b",".join(te).split(b",")] != [b"chunked"]:
        return ERROR
    return ("ok", rec.status, rec.body)


def h11_reads(data: bytes) -> Verdict:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    status, body = 0, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return ("ok", status, body)
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return ERROR
    except h11.RemoteProtocolError:
        return ERROR


# ------------------------------------------------------------------ the corpus

TOKEN = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
VALUE = st.from_regex(r"([!-~]([ -~]{0,30}[!-~])?)?", fullmatch=True)
STATUS = st.sampled_from([200, 201, 204, 206, 301, 302, 304, 404, 418, 500, 503, 599, 0, 99])
FRAMING = st.sampled_from(["length", "length-zeros", "chunked", "close", "length-short"])
MUTATION_BYTES = [b" ", b"\t", b"\x0b", b"\x0c", b"\n", b"\r", b"\x00", b":", b";", b"0", b"\x7f"]


@dataclass
class Case:
    data: bytes
    note: str
    mutated: bool = False


def chunked(body: bytes, draw: st.DrawFn) -> bytes:
    out = b""
    rest = body
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        piece, rest = rest[:size], rest[size:]
        digits = b"%x" % size if draw(st.booleans()) else b"%X" % size
        zeros = b"0" * draw(st.sampled_from([0, 0, 1, 15]))  # long hex sizes are valid
        ext = draw(st.sampled_from([b"", b"", b";a=b", b';q="x;y"', b";" + b"e" * 300]))
        out += zeros + digits + ext + b"\r\n" + piece + b"\r\n"
    trailer = draw(st.sampled_from([b"", b"", b"X-Trailer: 1\r\n"]))
    return out + b"0\r\n" + trailer + b"\r\n"


@st.composite
def responses(draw: st.DrawFn) -> Case:
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(STATUS)
    reason = draw(st.sampled_from([b"", b" OK", b" Not Found", b" x y  z", " Überlastet".encode()]))
    body = draw(st.binary(max_size=120))
    framing = draw(FRAMING)
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6))
    fields = [
        (n, v)
        for n, v in fields
        if n.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    lines = [b"%s %03d%s" % (version, status, reason)]
    lines += [n.encode() + b": " + v.encode() for n, v in fields]
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "length-zeros":
        lines.append(b"Content-Length: 000%d" % len(body))
    elif framing == "length-short":
        lines.append(b"Content-Length: %d" % (len(body) + 5))
    elif framing == "chunked":
        te = draw(
            st.sampled_from([b"chunked", b"chunked", b"Chunked", b"gzip, chunked", b"xchunked"])
        )
        lines.append(b"Transfer-Encoding: " + te)
    interim = draw(st.sampled_from([b"", b"", b"HTTP/1.1 100 Continue\r\n\r\n"]))
    head = interim + b"\r\n".join(lines) + b"\r\n\r\n"
    payload = chunked(body, draw) if framing == "chunked" else body
    data = head + payload
    note = framing
    mutation = draw(st.sampled_from(["none", "none", "insert", "delete", "lf"]))
    if mutation == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(MUTATION_BYTES)) + data[at:]
        note += f" insert@{at}"
    elif mutation == "delete" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + data[at + 1 :]
        note += f" delete@{at}"
    elif mutation == "lf":
        data = data.replace(b"\r\n", b"\n", draw(st.integers(1, 3)))
        note += " bare LF"
    return Case(data, note, mutated=mutation != "none")


# ------------------------------------------------------------------ the properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_the_probe_reads_what_strict_llhttp_reads(
    loop: asyncio.AbstractEventLoop, case: Case
) -> None:
    data = case.data
    expected = llhttp_reads(data)
    assert probe_reads(loop, [data]) == expected, case


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_however_the_bytes_are_split_the_verdict_is_the_same(
    loop: asyncio.AbstractEventLoop, case: Case
) -> None:
    data = case.data
    whole = probe_reads(loop, [data])
    for cut in range(1, len(data)):
        assert probe_reads(loop, [data[:cut], data[cut:]]) == whole, (cut, case)
    assert probe_reads(loop, [data[i : i + 1] for i in range(len(data))]) == whole, case


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_what_the_probe_accepts_h11_reads_the_same(
    loop: asyncio.AbstractEventLoop, case: Case
) -> None:
    """On well-formed responses h11 must read exactly what the probe reads; on mutated ones,
    when both accept, the same status and body (where they disagree on accepting at all, the
    probe follows llhttp: see the first property and H11_LIMITS below)."""
    ours = probe_reads(loop, [case.data])
    theirs = h11_reads(case.data)
    if ours[0] == "ok" and theirs[0] == "ok":
        assert theirs == ours, case
    if not case.mutated:
        assert theirs == ours, case


# ------------------------------------------------------------------ named framing cases (family 5)

HEAD = b"HTTP/1.1 200 OK\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"

NAMED: dict[str, tuple[bytes, Verdict]] = {
    # rejected by llhttp, h11 and aiohttp alike
    "space after chunk size": (CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n", ERROR),
    "tab before chunk size": (CHUNKED + b"\t3\r\nabc\r\n0\r\n\r\n", ERROR),
    "VT in chunk size": (CHUNKED + b"3\x0b\r\nabc\r\n0\r\n\r\n", ERROR),
    "FF in chunk size": (CHUNKED + b"3\x0c\r\nabc\r\n0\r\n\r\n", ERROR),
    "space before chunk extension": (CHUNKED + b"3 ;a=b\r\nabc\r\n0\r\n\r\n", ERROR),
    "Transfer-Encoding xchunked": (HEAD + b"Transfer-Encoding: xchunked\r\n\r\nabc", ERROR),
    "Transfer-Encoding gzip, chunked": (
        HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ERROR,
    ),
    "Transfer-Encoding chunked, gzip": (HEAD + b"Transfer-Encoding: chunked, gzip\r\n\r\n", ERROR),
    "folded Content-Encoding": (
        HEAD + b"Content-Encoding: gzip\r\n , identity\r\nContent-Length: 0\r\n\r\n",
        ERROR,
    ),
    "status 000": (b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", ERROR),
    "negative chunk size": (CHUNKED + b"-1\r\n", ERROR),
    "chunk size 0x3": (CHUNKED + b"0x3\r\nabc\r\n0\r\n\r\n", ERROR),
    # accepted by all three
    "long hex chunk size": (CHUNKED + b"0" * 19 + b"3\r\nabc\r\n0\r\n\r\n", ("ok", 200, b"abc")),
    "Content-Length with leading zeros": (
        HEAD + b"Content-Length: " + b"0" * 10 + b"3\r\n\r\nabc",
        ("ok", 200, b"abc"),
    ),
    "very long hex chunk size": (
        CHUNKED + b"0" * 40 + b"3\r\nabc\r\n0\r\n\r\n",
        ("ok", 200, b"abc"),
    ),
    "long chunk extension": (
        CHUNKED + b"3;" + b"e" * 20_000 + b"\r\nabc\r\n0\r\n\r\n",
        ("ok", 200, b"abc"),
    ),
    "Transfer-Encoding Chunked": (
        HEAD + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ("ok", 200, b"abc"),
    ),
}


# Where h11 reads otherwise, and why the probe follows llhttp: h11 takes at most 20 hex digits
# in a chunk size (llhttp and aiohttp any number), and it is lenient where llhttp strict is not
# (whitespace after a chunk size, obsolete line folding).
H11_LIMITS = {"very long hex chunk size", "space after chunk size", "folded Content-Encoding"}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_framing_cases(loop: asyncio.AbstractEventLoop, name: str) -> None:
    data, verdict = NAMED[name]
    assert probe_reads(loop, [data]) == verdict
    if name not in H11_LIMITS:
        assert h11_reads(data) == verdict
    if "Transfer-Encoding" not in name and name != "status 000":
        assert llhttp_reads(data) == verdict
