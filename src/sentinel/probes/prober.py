"""`Prober`: the one entry point the daemon and the CLI use; owns the probe kinds' lifetimes and
dispatches each site to the kind registered for it (base.py: one module per kind).

HTTP(S) goes through `LeanHttpProber` (one bare asyncio protocol per probe: about half the CPU
of an aiohttp `ClientSession` request, and a real TLS phase); the aiohttp-based reference it is
tested against lives with the tests (tests/http_reference.py)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from sentinel import USER_AGENT
from sentinel.config import SiteConfig
from sentinel.probes.base import Probe, ProbeSettings, kinds
from sentinel.probes.common import AsyncLifecycle, clean_message
from sentinel.probes.connect import DEFAULT_RESOLVER_THREADS, Resolver
from sentinel.probes.result import ProbeResult

log = logging.getLogger("sentinel")


class Prober(AsyncLifecycle):
    """`async with Prober(...) as prober: result = await prober.probe(site)`.

    `probe` never raises (except on cancellation). `ssl_context`, if given, replaces the system
    trust store for verified HTTPS requests.
    """

    def __init__(
        self,
        *,
        user_agent: str = USER_AGENT,
        ssl_context: ssl.SSLContext | None = None,
        precise_latency: bool = False,
        resolver_threads: int = DEFAULT_RESOLVER_THREADS,
    ) -> None:
        # One resolver pool for every kind, sized to max_concurrency: see connect.Resolver.
        self._resolver = Resolver(resolver_threads)
        settings = ProbeSettings(
            user_agent=user_agent,
            ssl_context=ssl_context,
            precise_latency=precise_latency,
            resolver=self._resolver,
        )
        self._probes: dict[str, Probe] = {
            kind: cls.from_settings(settings) for kind, cls in kinds().items()
        }

    def set_precise_latency(self, on: bool) -> None:
        """From a reloaded config; applies from the next probe."""
        for probe in self._probes.values():
            probe.set_precise_latency(on)

    def forget(self, site: str) -> None:
        """The site left the config (reconcile.forget_site)."""
        for probe in self._probes.values():
            probe.forget(site)

    def set_max_concurrency(self, value: int) -> None:
        """From a reloaded config: the resolver pool follows max_concurrency, so lookups still
        never wait for a thread (see connect.Resolver)."""
        self._resolver.resize(value)

    async def start(self) -> None:
        for probe in self._probes.values():
            await probe.start()

    async def close(self) -> None:
        for probe in self._probes.values():
            await probe.close()
        self._resolver.close()

    async def probe(self, site: SiteConfig) -> ProbeResult:
        """Never raises except `CancelledError`: whatever goes wrong inside a probe (a bug, a
        codec that raises on a server's charset, ...) becomes a failed result with reason
        "error", so the site still counts failures and can go DOWN. A site that never alerts
        because its probe raised is the worst bug a monitor can have."""
        started_at = time.time()
        t0 = time.perf_counter()
        try:
            probe = self._probes.get(site.kind)
            if probe is not None:
                return await probe.probe(site)
            message = f"unknown probe kind {site.kind!r}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("probe of site=%s raised", site.name, exc_info=True)
            message = internal_error_text(exc)
        return ProbeResult.failure("error", message, started_at, time.perf_counter() - t0)


def internal_error_text(exc: BaseException) -> str:
    """One line for a person: what raised, without a traceback."""
    name = type(exc).__name__
    try:
        return clean_message(f"internal error: {name}: {exc}")
    except Exception:  # an exception whose str() raises, or a bug in clean_message itself
        return f"internal error: {name}"
