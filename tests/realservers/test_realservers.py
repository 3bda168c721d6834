"""Debian's nginx, apache2, lighttpd and caddy on loopback, each case probed by sentinel's probe
and by curl: the verdicts must agree (docs/real-servers.md).

Each server starts once for this module with all its listeners (module-scoped fixture) and is
always stopped by its PID. Outside CI a missing server or curl skips its tests with the reason;
under CI=true it is a failure: .ci/run installs them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rs_cases import CASES, NEW_KEYS, Case, known_bug
from rs_curl import curl_binary, curl_probe, verdict_of
from rs_pki import Pki, make_pki
from rs_servers import SERVERS, ServerStartError, WebServer
from rs_site import LISTENERS, Site, free_ports, write_root

from sentinel.config import ConfigError, SiteConfig, parse_config
from sentinel.probes.prober import Prober
from sentinel.probes.result import ProbeResult

try:
    import uvloop
except ImportError:  # the test extra installs it; the daemon runs on it where it is installed
    uvloop = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow

USER_AGENT = "sentinel-uptime/0.1"
START_TRIES = 3  # a port picked free may be taken before the server binds it
EXPIRY_TOLERANCE = 1.0  # seconds: certificates carry whole seconds


def _missing(what: str, install: str) -> None:
    message = f"{what} is not installed (apt-get install {install})"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message}: .ci/run installs it")
    pytest.skip(message)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def files() -> Iterator[tuple[Path, Pki]]:
    base = Path(tempfile.mkdtemp(prefix="sentinel-realservers-"))
    try:
        (base / "pki").mkdir()
        pki = make_pki(base / "pki")
        write_root(base / "root")
        yield base, pki
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, files: tuple[Path, Pki]) -> Iterator[WebServer]:
    cls: type[WebServer] = request.param
    absent = cls.absent()
    if absent is not None:
        _missing(absent, cls.package)
    if curl_binary() is None:
        _missing("curl", "curl")
    base, pki = files
    unavailable = dict(cls.unsupported)
    if not _ipv6_loopback():
        unavailable["http6"] = "no IPv6 loopback (::1) on this machine"
    names = [name for name in LISTENERS if name not in unavailable]
    work = Path(tempfile.mkdtemp(prefix=f"{cls.name}-", dir=base))
    for attempt in range(START_TRIES):
        site = Site(base / "root", pki, free_ports(names))
        instance = cls(work, site)
        instance.unavailable = unavailable
        try:
            instance.start()
        except ServerStartError:
            instance.stop()
            if attempt == START_TRIES - 1:
                raise
            continue
        break
    try:
        yield instance
    finally:
        instance.stop()


def _site(case: Case, server: WebServer) -> tuple[SiteConfig, dict[str, object], str | None]:
    """The site as parse_config makes it, its raw keys, and the first new key (issue 12) that
    parse_config does not know yet: then the site is made without the new keys, for curl."""
    options = case.options(server.site)
    path = case.path.replace("{dynamic}", server.dynamic_page)
    url = case.url(server.site) if case.url else server.site.url(case.listener, path)
    raw = {"name": case.id, "url": url, "interval": "60s", "timeout": "20s", **options}
    try:
        return parse_config({"sites": [raw]}).sites[0], options, None
    except ConfigError as exc:
        missing = [
            key
            for key in NEW_KEYS
            if key in options and any(f"{key}: unknown key" in line for line in exc.errors)
        ]
        if not missing:
            raise
    known = {key: value for key, value in raw.items() if key not in NEW_KEYS}
    return parse_config({"sites": [known]}).sites[0], options, missing[0]


def _trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


async def _probe(site: SiteConfig, context: ssl.SSLContext | None) -> ProbeResult:
    async with Prober(user_agent=USER_AGENT, ssl_context=context) as prober:
        return await prober.probe(site)


async def _on_uvloop(site: SiteConfig, context: ssl.SSLContext | None) -> ProbeResult:
    """The probe on a uvloop loop of its own, in a thread."""
    assert uvloop is not None

    def run() -> ProbeResult:
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(_probe(site, context))
        finally:
            loop.close()

    return await asyncio.to_thread(run)


@pytest.mark.parametrize(
    ("server", "case"),
    [
        pytest.param(
            cls,
            case,
            id=f"{cls.name}-{case.id}",
            marks=[pytest.mark.xfail(strict=True, reason=bug)]
            if (bug := known_bug(case, cls.name))
            else [],
        )
        for cls in SERVERS
        for case in CASES
    ],
    indirect=["server"],
    scope="module",  # group the tests by server: each starts once
)
async def test_sentinel_agrees_with_curl(server: WebServer, case: Case) -> None:
    for feature in (case.needs, case.listener):
        if feature in server.unavailable:
            pytest.skip(f"{server.name}: {server.unavailable[feature]}")
    site, options, missing_key = _site(case, server)
    pki = server.site.pki
    expected = case.expect_on.get(server.name, case.expect)

    # curl and sentinel (on both loops the daemon may run: sentinel.eventloop) at once.
    context = _trusting(pki) if case.trust == "context" else None
    loops = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]
    if missing_key is not None:
        loops = []  # sentinel cannot be asked yet: curl alone checks the case
    curl = asyncio.ensure_future(
        asyncio.to_thread(curl_probe, site, options=options, ca_file=pki.ca, user_agent=USER_AGENT)
    )
    outcomes: list[ProbeResult] = await asyncio.gather(
        *(
            _probe(site, context) if loop == "asyncio" else _on_uvloop(site, context)
            for loop in loops
        )
    )
    run = await curl
    results = dict(zip(loops, outcomes, strict=True))

    # curl first: if it does not see what the case is built to show, the server is not set
    # up as the case claims, and agreeing would prove nothing.
    assert run.verdict.reason == expected, (
        f"curl: {run.verdict} (exit {run.exit_code}: {run.error}); the case expects {expected}"
    )
    if case.check is not None:
        problem = case.check(run)
        assert problem is None, f"{server.name} did not serve what {case.id} is about: {problem}"
    if missing_key is not None:
        pytest.skip(f"needs site key {missing_key} (issue 12)")

    for loop, result in results.items():
        got = verdict_of(result)
        said = f"sentinel ({loop}): {got} ({result.message})"
        if case.difference is not None:
            # A documented difference (docs/real-servers.md): sentinel fails where curl passes.
            assert not result.ok and result.reason in case.difference.sentinel, (
                f"{said}; documented: {case.difference.sentinel}"
            )
            continue
        assert got == run.verdict, (
            f"{said}; curl: {run.verdict} (exit {run.exit_code}: {run.error})"
        )
        if case.expiry is not None:
            cert = pki.servers[LISTENERS[case.listener].cert or ""]
            want = cert.leaf_not_after if case.expiry == "leaf" else cert.earliest_not_after
            assert run.cert_expiries, "curl reported no certificates"
            assert abs(min(run.cert_expiries) - want) <= EXPIRY_TOLERANCE
            assert result.tls_expiry is not None, f"{said}: no certificate expiry"
            assert abs(result.tls_expiry - want) <= EXPIRY_TOLERANCE, (
                f"{said}: earliest expiry {result.tls_expiry:.0f}, the served chain's {want:.0f} "
                f"(curl saw {sorted(run.cert_expiries)})"
            )
