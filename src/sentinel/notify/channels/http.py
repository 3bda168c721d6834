"""The shared HTTP client of the webhook and Alertmanager channels (aiohttp, imported only when such
a channel is configured: it costs ~11 MiB of memory), and the verdict on an HTTP answer: 2xx is
delivered; 408, 429 and 5xx are worth retrying soon; any other 4xx is permanent (the receiver
refuses this request as it is)."""

from __future__ import annotations

import asyncio

import aiohttp

from sentinel.notify.errors import SendError
from sentinel.sanitize import one_line

__all__ = ["HttpPoster", "verdict"]

TIMEOUT = 10.0
_MAX_DETAIL = 300


def verdict(where: str, status: int, text: str) -> SendError | None:
    """None for a 2xx, else the SendError the answer means. Pure."""
    if 200 <= status <= 299:
        return None
    permanent = 400 <= status <= 499 and status not in (408, 425, 429)
    detail = one_line(text, 200)
    line = f"{where}: HTTP {status}" + (f" ({detail})" if detail else "")
    return SendError(line[:_MAX_DETAIL], permanent=permanent)


class HttpPoster:
    """POSTs bytes, one session per channel (connections are reused between alerts)."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "sentinel-uptime"},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str], where: str) -> None:
        """Raises SendError unless the receiver answered 2xx."""
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                text = ""
                if not 200 <= response.status <= 299:
                    text = (await response.content.read(400)).decode("utf-8", "replace")
                error = verdict(where, response.status, text)
        except TimeoutError:
            detail = f"{where}: timed out after {self._timeout:g}s"
            raise SendError(detail, permanent=False) from None
        except aiohttp.ClientError as exc:
            detail = one_line(str(exc) or type(exc).__name__, 200)
            raise SendError(f"{where}: {detail}", permanent=False) from None
        except asyncio.CancelledError:
            raise
        if error is not None:
            raise error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
