"""The `/ping/<name>...` endpoint on sentinel's web server: who may ping, how often, how much.

    GET|POST|HEAD /ping/<name>           success
                  /ping/<name>/start     the job started (its run time is measured)
                  /ping/<name>/fail      the job failed
                  /ping/<name>/<0-255>   the job's exit code (0 = success)

The token comes as `?token=` or `Authorization: Bearer`, compared in constant time; an unknown
name and a wrong or missing token get the same 401, so no one learns which names exist. After
the token, a per-name token bucket (a burst of BURST, then one ping per REFILL_SECONDS): a flood
gets 429s that cost neither memory nor a write to the store. A POST body is read in pieces, of
which only the last MAX_KEPT bytes are kept; bodies above MAX_BODY are refused unread (413).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple
from urllib.parse import parse_qs

from sentinel.heartbeats.state import MAX_OUTPUT, PingKind

log = logging.getLogger("sentinel.heartbeats")

PREFIX: Final = "/ping/"
MAX_KEPT: Final = MAX_OUTPUT  # bytes of a POST body kept (its end: where errors are)
MAX_BODY: Final = 1024 * 1024  # larger bodies are refused without being read
BODY_TIMEOUT: Final = 10.0  # seconds to send the body
READ_PIECE: Final = 16 * 1024
BURST: Final = 10  # pings one name may send at once ...
REFILL_SECONDS: Final = 1.0  # ... and then one per this many seconds
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Compared against when the name is unknown, so that answer takes as long as a wrong token.
_DUMMY_TOKEN: Final = b"\x00" * 32

Rejection = Literal["unauthorized", "rate_limited", "bad_request", "too_large"]


@dataclass(frozen=True, slots=True)
class PingTarget:
    name: str
    kind: PingKind
    exit_code: int | None  # for kind "fail" from /<1-255>; None for /fail


def parse_ping_path(path: str) -> PingTarget | None:
    """'/ping/backup/start' -> PingTarget('backup', 'start', None); None if not a ping path."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if not 1 <= len(parts) <= 2 or not _NAME_RE.match(parts[0]):
        return None
    name = parts[0]
    if len(parts) == 1 or parts[1] == "":
        return PingTarget(name, "success", None)
    action = parts[1]
    if action == "start":
        return PingTarget(name, "start", None)
    if action == "fail":
        return PingTarget(name, "fail", None)
    if action.isascii() and action.isdigit() and len(action) <= 3 and int(action) <= 255:
        code = int(action)
        return PingTarget(name, "success", 0) if code == 0 else PingTarget(name, "fail", code)
    return None


class TokenBucket:
    """BURST pings at once, then one per REFILL_SECONDS. `now` is monotonic, passed in."""

    __slots__ = ("_burst", "_refill", "_tokens", "_updated")

    def __init__(self, now: float, *, burst: int = BURST, refill: float = REFILL_SECONDS) -> None:
        self._burst = float(burst)
        self._refill = refill
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed / self._refill)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def parse_head(head: bytes) -> dict[str, str]:
    """The header fields of a request head (lower-case names; the last one of a name wins)."""
    fields: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return fields


def given_token(query: str, fields: Mapping[str, str]) -> bytes | None:
    """The token from `?token=` or `Authorization: Bearer ...`, or None."""
    auth = fields.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get("token")
    if values:
        return values[0].encode("utf-8", "replace")
    return None


async def read_body(reader: asyncio.StreamReader, length: int) -> bytes:
    """Read `length` bytes, keeping only the last MAX_KEPT (memory stays bounded)."""
    kept = bytearray()
    left = length
    async with asyncio.timeout(BODY_TIMEOUT):
        while left > 0:
            piece = await reader.read(min(READ_PIECE, left))
            if not piece:
                raise asyncio.IncompleteReadError(bytes(kept), left)
            left -= len(piece)
            kept += piece
            if len(kept) > MAX_KEPT:
                del kept[: len(kept) - MAX_KEPT]
    return bytes(kept)


class PingAnswer(NamedTuple):
    status: int
    text: str


# (name) -> (known, token or None when it needs none)
TokenLookup = Callable[[str], tuple[bool, bytes | None]]
# (name, monotonic now) -> may it ping now?
RateCheck = Callable[[str, float], bool]
# (target, output) -> None: the ping is accepted and recorded
Accept = Callable[[PingTarget, str], None]


class PingEndpoint:
    """Turns one HTTP request on /ping/... into an accepted ping or a refusal."""

    def __init__(
        self,
        tokens: TokenLookup,
        allow: RateCheck,
        accept: Accept,
        *,
        on_reject: Callable[[Rejection], None] = lambda reason: None,
        monotonic: Callable[[], float],
    ) -> None:
        self._tokens = tokens
        self._allow = allow
        self._accept = accept
        self._on_reject = on_reject
        self._monotonic = monotonic

    def _refuse(self, reason: Rejection, status: int, text: str) -> PingAnswer:
        self._on_reject(reason)
        return PingAnswer(status, text)

    async def handle(
        self, method: str, target: str, head: bytes, reader: asyncio.StreamReader
    ) -> PingAnswer:
        if method not in ("GET", "HEAD", "POST"):
            return self._refuse("bad_request", 405, "only GET, HEAD and POST")
        path, _, query = target.partition("?")
        ping = parse_ping_path(path)
        if ping is None:
            return self._refuse("bad_request", 404, "not found")
        fields = parse_head(head)
        known, expected = self._tokens(ping.name)
        given = given_token(query, fields)
        if not known:
            hmac.compare_digest(_DUMMY_TOKEN, given or b"")
            return self._refuse("unauthorized", 401, "unknown heartbeat or wrong token")
        if expected is not None and not hmac.compare_digest(expected, given or b""):
            return self._refuse("unauthorized", 401, "unknown heartbeat or wrong token")
        if not self._allow(ping.name, self._monotonic()):
            return self._refuse("rate_limited", 429, "too many pings, slow down")
        output = ""
        if method == "POST":
            if "transfer-encoding" in fields:
                return self._refuse("bad_request", 411, "send the body with a Content-Length")
            length_text = fields.get("content-length", "0")
            if not length_text.isascii() or not length_text.isdigit() or len(length_text) > 12:
                return self._refuse("bad_request", 400, "bad Content-Length")
            length = int(length_text)
            if length > MAX_BODY:
                return self._refuse("too_large", 413, f"body above {MAX_BODY} bytes")
            body = await read_body(reader, length)
            output = body.decode("utf-8", "replace")
        self._accept(ping, output)
        return PingAnswer(200, "OK")
