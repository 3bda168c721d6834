"""What every probe shares, without any HTTP client behind it: limits, the `async with`
lifecycle, message cleaning, status descriptions and the certificate-expiry parser. (`sentinel
run` never imports aiohttp: its import alone is ~11 MiB of resident memory, a sixth of the
daemon's.)"""

from __future__ import annotations

import calendar
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from sentinel.sanitize import one_line

# Interim (1xx) responses accepted before the final one: a real server sends one or two (100
# Continue, 103 Early Hints); a flood of them would keep the parser busy until the deadline and
# starve every other probe of the event loop.
MAX_INTERIM_RESPONSES = 32
MESSAGE_LIMIT = 200  # characters of a result message


class AsyncLifecycle(ABC):
    """`async with prober:` runs `start()` on the way in and `close()` on the way out."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def host_port(host: str, port: int | None) -> str:
    """'::1', 80 -> '[::1]:80'; for messages."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def describe_statuses(codes: tuple[int, ...] | None) -> str:
    """(200, 201, ..., 299, 301) -> '2xx, 301'; None -> '2xx'."""
    if codes is None:
        return "2xx"
    wanted = set(codes)
    parts: list[str] = []
    for base in range(100, 600, 100):
        block = set(range(base, base + 100))
        if block <= wanted:
            parts.append(f"{base // 100}xx")
            wanted -= block
    parts.extend(str(code) for code in sorted(wanted))
    parts.sort(key=lambda p: p.replace("xx", "00"))
    return ", ".join(parts)


def clean_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One short line, safe for logs, email headers and JSON (sentinel.sanitize.one_line):
    control, format and separator characters (CR, LF, ESC, bidi overrides, U+2028, ...) become
    spaces; capped at `limit`."""
    return one_line(text, limit)


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at `pos` -> (tag, content start, content end)."""
    tag, length = data[pos], data[pos + 1]
    start = pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end


def der_not_after(der: bytes) -> float | None:
    """notAfter of a DER-encoded X.509 certificate (RFC 5280 4.1) as epoch seconds, or None."""
    try:
        _, cert_start, _ = _der_item(der, 0)  # Certificate
        _, pos, _ = _der_item(der, cert_start)  # TBSCertificate
        tag, _, end = _der_item(der, pos)
        if tag == 0xA0:  # [0] version, optional
            pos = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, pos = _der_item(der, pos)
        _, validity_start, _ = _der_item(der, pos)
        _, _, after_pos = _der_item(der, validity_start)  # notBefore
        tag, start, end = _der_item(der, after_pos)  # notAfter
        text = der[start:end].decode("ascii")
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
            return None
        if len(text) != 15 or not text.endswith("Z"):
            return None
        parsed = time.strptime(text, "%Y%m%d%H%M%SZ")
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return float(calendar.timegm(parsed))
