"""TCP connect probes (kind "tcp": `tcp://HOST:PORT` URLs and the `tcp = "HOST:PORT"` key):
resolve, open a connection within the timeout, close it, and return a `ProbeResult` with dns
and connect times (never an exception).

Names, addresses and the staggered attempts are connect.py's, shared with the HTTP probe."""

from __future__ import annotations

import asyncio
import time
from typing import Self

from sentinel.config import SiteConfig, split_host_port
from sentinel.probes.base import Probe, ProbeSettings, register
from sentinel.probes.common import clean_message, host_port
from sentinel.probes.connect import (
    ConnectError,
    PhaseTimes,
    Resolver,
    literal,
    open_connection,
    wire_host,
)
from sentinel.probes.result import ProbeResult

# For callers without a Prober (tests, tools): threads are only started when a name is looked up.
_SHARED_RESOLVER = Resolver()


@register
class TcpProbe(Probe):
    """The "tcp" kind: `probe_tcp` for each site, with the Prober's shared resolver."""

    kind = "tcp"
    schemes = ("tcp",)

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._resolver = resolver

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> Self:
        return cls(settings.resolver)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def probe(self, site: SiteConfig) -> ProbeResult:
        return await probe_tcp(site, self._resolver)


async def probe_tcp(site: SiteConfig, resolver: Resolver | None = None) -> ProbeResult:
    """Connect to `site.target` ("host:port" or "[v6]:port"). The addresses a name resolves to
    are tried staggered (RFC 8305), all within `site.timeout`. dns is None for an IP."""
    started_at = time.time()
    t0 = time.perf_counter()
    phases = PhaseTimes(stage="resolve")

    def result(reason: str, message: str, late: float = 0.0) -> ProbeResult:
        return ProbeResult(
            ok=reason == "ok",
            reason=reason,
            message=clean_message(message),
            started_at=started_at,
            total=time.perf_counter() - t0 - late,
            dns=phases.dns,
            connect=phases.connect,
        )

    try:
        host, port = split_host_port(site.target, what="tcp target")
    except ValueError as exc:
        return result("error", str(exc))
    where = host_port(host, port)
    try:
        async with asyncio.timeout(site.timeout):
            name = wire_host(host)
            if literal(name) is not None:
                phases.stage = "connect"
            transport, late = await open_connection(
                asyncio.Protocol,
                name,
                port,
                phases=phases,
                resolver=resolver or _SHARED_RESOLVER,
                where=where,
            )
            transport.abort()
            return result("ok", f"connected to {where}", late)
    except TimeoutError:
        if phases.stage == "resolve" and phases.dns is None:  # (set when the lookup ended)
            return result("timeout", f"cannot resolve {host} within {site.timeout:g}s")
        return result("timeout", f"no connection to {where} within {site.timeout:g}s")
    except ConnectError as fail:
        return result(fail.reason, fail.message)
    except Exception as exc:  # a probe never raises into the scheduler
        return result("error", f"{type(exc).__name__}: {exc}")
