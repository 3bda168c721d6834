"""`/` served compressed (`Content-Encoding: deflate`) to a client that takes it: on loopback,
through sentinel's own server, the zlib stream decompresses to exactly the page an identity
request gets (same states, same second), with cached and uncached (DOWN) sites, hostile names,
a site whose state changes between requests; HEAD; `Vary` always; curl --compressed."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest

from http_raw import exchange, split, unchunk
from sentinel.config import SiteConfig
from sentinel.history import db
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import HOUR_MS, Rollup
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.store import Store, StoreError
from sentinel.web import WebServer
from sentinel.webviews.pages import StatusPages

T0 = 1_767_225_600.0 + 1200.0  # 00:20 UTC
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "\u202eevil\u202c",
    "a\x00b\x1bc",
    "' onmouseover='x",
    "ünïcødé €😀",
]


def names(n: int) -> list[str]:
    return (HOSTILE + [f"site-{i}" for i in range(n)])[:n]


def errors(exc: StoreError) -> None:
    raise exc


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fill_store(store: Store, sites: list[str]) -> None:
    hour = int(T0 * 1000) // HOUR_MS
    rows = {}
    for i, name in enumerate(sites):
        for back in range(0, 20 * 24, 5):
            r = Rollup(covered_ms=3_000_000, down_ms=(back % 7) * 60_000 * (i % 2))
            for k in range(3):
                r.add_probe(True, 40_000 + 9_000 * k + 1_000 * i)
            rows[name, hour - back] = r
        start = int((T0 - 86400 * (i + 1)) * 1000)
        db.incident_opened(store, name, start, "timeout", f"timed out <{name}>")
        db.incident_updated(store, name, start, alerts=1, ended_ms=start + 600_000)
    if rows:
        db.write_hours(store, rows)


def state(name: str, status: Status, now: float) -> SiteState:
    ok = status is Status.UP
    last = ResultSummary(
        at=now - 5,
        ok=ok,
        status=200 if ok else 502,
        total=0.05,
        reason="ok" if ok else "status",
        message="" if ok else "HTTP 502 <b>",
    )
    return SiteState(
        site=name,
        status=status,
        since=now - 3600,
        recent=(last,),
        incident_started=None if ok else now - 3600,
    )


class Page:
    """StatusPages over a store of `n` sites (every third DOWN, one never checked), served by
    sentinel's own server on loopback."""

    def __init__(self, store: Store, n: int) -> None:
        self.names = names(n)
        self.sites = {
            s: SiteConfig(name=s, kind="http", target=f"http://127.0.0.1:1/{i}")
            for i, s in enumerate(self.names)
        }
        self.clock = Clock(T0)
        self.states = {
            s: state(s, Status.DOWN if i % 3 == 1 else Status.UP, T0)
            for i, s in enumerate(self.names)
            if i != 2
        }
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=self.clock)
        self.pages = StatusPages(
            sites=lambda: self.sites,
            states=lambda: self.states,
            settings=lambda: StatusPageConfig(title="T <&>"),
            recorder=recorder,
            reader=HistoryReader(store, recorder, clock=self.clock),
            clock=self.clock,
        )


@pytest.fixture
def store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as s:
        yield s


@contextlib.asynccontextmanager
async def serve(page: Page) -> AsyncIterator[int]:
    """The page's routes on a loopback port."""
    server = WebServer(page.pages.routes(), prefixes=page.pages.prefixes())
    port = await server.start("127.0.0.1:0")
    try:
        yield port
    finally:
        await server.close()


async def request(port: int, method: str = "GET", accept: str | None = None) -> bytes:
    extra = f"Accept-Encoding: {accept}\r\n" if accept is not None else ""
    raw = f"{method} / HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    return await exchange(port, raw, read_timeout=30)


async def both(port: int, *, deflate_first: bool) -> tuple[bytes, bytes]:
    """(the page as it is, the deflate answer decompressed), checking their header fields, and
    that the gzip answer (a client that takes only gzip) decompresses to the same page."""
    order = ["deflate", "gzip", None] if deflate_first else [None, "gzip", "deflate"]
    got: dict[str | None, bytes] = {}
    for accept in order:
        status, fields, body = split(await request(port, accept=accept))
        assert status == "HTTP/1.1 200 OK"
        assert fields["vary"] == "Accept-Encoding"
        assert fields["transfer-encoding"] == "chunked"
        assert fields.get("content-encoding") == accept
        got[accept] = unchunk(body)
    inflated = zlib.decompress(got["deflate"])
    # (the page's clock does not move between the requests: the same text)
    assert gzip.decompress(got["gzip"]) == inflated
    return got[None], inflated


@pytest.mark.parametrize("n", [0, 1, 4, 9, 40])
async def test_the_deflate_answer_decompresses_to_the_identity_page(store: Store, n: int) -> None:
    page = Page(store, n)
    fill_store(store, page.names)
    async with serve(page) as port:
        await rounds(page, port, n)
    if n:
        assert page.pages._blocks.hits > 0  # (cached sites were served from the cache)


async def rounds(page: Page, port: int, n: int) -> None:
    for round_ in range(4):
        plain, inflated = await both(port, deflate_first=round_ % 2 == 0)
        assert inflated == plain
        text = plain.decode()
        assert text.startswith("<!doctype html>") and text.endswith("</html>")
        assert text.count('<section class="site"') == n
        assert "<script>alert" not in text
        # between requests: time goes on, one site's state changes, another gets a probe
        page.clock.t += 10
        if page.names:
            flip = page.names[round_ % len(page.names)]
            old = page.states.get(flip)
            up = old is not None and old.status is Status.UP
            page.states[flip] = state(flip, Status.DOWN if up else Status.UP, page.clock.t)


async def test_a_state_change_shows_in_both_encodings(store: Store) -> None:
    page = Page(store, 6)
    fill_store(store, page.names)
    async with serve(page) as port:
        plain, inflated = await both(port, deflate_first=True)  # (the warm-up, then cached)
        assert inflated == plain
        target = page.names[0]  # UP: cached
        assert page.states[target].status is Status.UP
        down = plain.decode().count('data-state="down"')
        page.states[target] = state(target, Status.DOWN, page.clock.t)
        plain, inflated = await both(port, deflate_first=True)
        assert inflated == plain
        assert plain.decode().count('data-state="down"') == down + 1
        page.clock.t += 1
        page.states[target] = state(target, Status.UP, page.clock.t)
        plain, inflated = await both(port, deflate_first=False)
        assert inflated == plain
        assert plain.decode().count('data-state="down"') == down


async def test_head_answers_with_the_same_fields_and_no_body(store: Store) -> None:
    page = Page(store, 4)
    fill_store(store, page.names)
    async with serve(page) as port:
        for accept in ("gzip, deflate, br", None, "deflate;q=0, *", "*"):
            status, fields, body = split(await request(port, "HEAD", accept))
            assert status == "HTTP/1.1 200 OK" and body == b""
            assert fields["vary"] == "Accept-Encoding"
            # (deflate when both are taken alike; "deflate;q=0, *": the wildcard takes gzip)
            expected: dict[str | None, str] = {
                "gzip, deflate, br": "deflate",
                "*": "deflate",
                "deflate;q=0, *": "gzip",
            }
            assert fields.get("content-encoding") == expected.get(accept)


async def test_http_1_0_gets_the_deflate_answer_whole_with_its_length(store: Store) -> None:
    page = Page(store, 4)
    fill_store(store, page.names)
    async with serve(page) as port:
        plain, _ = await both(port, deflate_first=False)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.0\r\nAccept-Encoding: deflate\r\n\r\n")
            async with asyncio.timeout(30):
                raw = await reader.read()
        finally:
            writer.close()
    _, fields, body = split(raw)
    assert fields["content-encoding"] == "deflate"
    assert int(fields["content-length"]) == len(body)
    assert zlib.decompress(body) == plain


async def test_curl_compressed_gets_the_same_page(store: Store) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (.ci/run installs it)")
    page = Page(store, 9)
    fill_store(store, page.names)
    async with serve(page) as port:
        plain, _ = await both(port, deflate_first=False)
        proc = await asyncio.create_subprocess_exec(
            curl,
            "--compressed",
            "--silent",
            "--show-error",
            "--dump-header",
            "-",
            f"http://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-encoding: deflate" in head.lower()
    assert body == plain
