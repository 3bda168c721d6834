"""TCP connect probes (kind "tcp": `tcp://HOST:PORT` URLs and the `tcp = "HOST:PORT"` key):
resolve, open a connection within the timeout, close it, and return a `ProbeResult` with dns
and connect times (never an exception)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Self

from sentinel.config import SiteConfig, split_host_port
from sentinel.probes.base import Probe, ProbeSettings, register
from sentinel.probes.common import clean_message, host_port
from sentinel.probes.result import ProbeResult

_Address = tuple[socket.AddressFamily, socket.SocketKind, int, tuple[object, ...]]


@register
class TcpProbe(Probe):
    """The "tcp" kind: `probe_tcp` for each site; nothing to set up or keep."""

    kind = "tcp"
    schemes = ("tcp",)

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> Self:
        return cls()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def probe(self, site: SiteConfig) -> ProbeResult:
        return await probe_tcp(site)


async def probe_tcp(site: SiteConfig) -> ProbeResult:
    """Connect to `site.target` ("host:port" or "[v6]:port"). Every address the name resolves
    to is tried in order until one accepts, all within `site.timeout`. dns is None for an IP."""
    started_at = time.time()
    t0 = time.perf_counter()
    dns: float | None = None
    connect: float | None = None
    phase = "resolve"

    def result(reason: str, message: str) -> ProbeResult:
        return ProbeResult(
            ok=reason == "ok",
            reason=reason,
            message=clean_message(message),
            started_at=started_at,
            total=time.perf_counter() - t0,
            dns=dns,
            connect=connect,
        )

    try:
        host, port = split_host_port(site.target, what="tcp target")
    except ValueError as exc:
        return result("error", str(exc))
    where = host_port(host, port)
    errors: list[OSError] = []
    try:
        async with asyncio.timeout(site.timeout):
            addresses = _literal_address(host, port)
            if addresses is None:
                addresses = await _resolve(host, port)
                dns = time.perf_counter() - t0
            phase = "connect"
            connect_started = time.perf_counter()
            for address in addresses:
                error = await _connect_one(address)
                if error is None:
                    connect = time.perf_counter() - connect_started
                    return result("ok", f"connected to {where}")
                errors.append(error)
    except TimeoutError:
        if phase == "resolve":
            return result("timeout", f"cannot resolve {host} within {site.timeout:g}s")
        return result("timeout", f"no connection to {where} within {site.timeout:g}s")
    except socket.gaierror as exc:
        dns = time.perf_counter() - t0
        return result("dns", f"cannot resolve {host}: {exc.strerror or exc}")
    except Exception as exc:  # a probe never raises into the scheduler
        return result("error", f"{type(exc).__name__}: {exc}")
    if all(isinstance(error, ConnectionRefusedError) for error in errors):
        return result("connect_refused", f"connection refused by {where}")
    last = errors[-1]
    return result("connect", f"cannot connect to {where}: {last.strerror or last}")


def _literal_address(host: str, port: int) -> list[_Address] | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 0, (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, 0, (host, port))]


async def _resolve(host: str, port: int) -> list[_Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    if not infos:
        raise socket.gaierror(socket.EAI_NONAME, "no addresses")
    return [(family, kind, proto, tuple(addr)) for family, kind, proto, _, addr in infos]


async def _connect_one(address: _Address) -> OSError | None:
    """Connect and close; None on success, else the error."""
    family, kind, proto, sockaddr = address
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None
