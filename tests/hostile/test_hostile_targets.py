"""Targets that hang, drip, flood, lie or bomb: every probe ends within the site's timeout (+0.5 s)
with the right reason, in bounded memory, without starving other probes of the event loop, through
the Prober API, `sentinel probe` and the running daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
import time
import tracemalloc
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hostile_server import BOMB_DECOMPRESSED, Hostile

from daemon_proc import SentinelProcess, wait_until
from sentinel.config import DEFAULT_MAX_REDIRECTS as MAX_REDIRECTS
from sentinel.config import SiteConfig
from sentinel.metrics import LAG_BUCKETS
from sentinel.probes.common import MAX_INTERIM_RESPONSES
from sentinel.probes.prober import Prober
from sentinel.probes.result import ProbeResult
from targets import target_server
from timing import run_delay

TIMEOUT = 1.0  # the sites' timeout in `sentinel probe` and the daemon
API_TIMEOUT = 0.5  # the same through the Prober API (shorter: the table has many timeouts)
MARGIN = 0.5  # a verdict may come this much after the timeout, no later
# The site's timeout through the API when the verdict must NOT be a timeout (a limit decides it):
# long, so that a CPU-starved run cannot turn the verdict into a timeout; the verdict must still
# come within API_TIMEOUT + MARGIN of CPU-available time (timing.run_delay).
VERDICT_TIMEOUT = 30.0
MEMORY_BUDGET = 8 * 1024 * 1024  # tracemalloc peak of one probe (the bombs hold 64 MiB)
LOOP_GAP_BUDGET = 0.25  # the longest the event loop may be blocked during one probe


@dataclass(frozen=True)
class Case:
    id: str
    server: str  # attribute of Hostile
    path: str  # may use {other} (the other host's base URL) and {plain}
    reason: str
    status: int = 0
    message: str = ""  # a fragment the message must contain
    options: dict[str, Any] = field(default_factory=dict)
    sends_data: bool = True  # False: nothing to allocate, so no (slow) memory run

    @property
    def timeout(self) -> float:
        """The site's timeout through the Prober API."""
        return API_TIMEOUT if self.reason == "timeout" else VERDICT_TIMEOUT


# fmt: off
CASES = [
    Case("accepts-never-answers", "plain", "/silent", "timeout", 0, "no response within 0.5s",
         sends_data=False),
    Case("headers-drip-one-byte-at-a-time", "plain", "/drip", "timeout", 0,
         "no response within 0.5s", sends_data=False),
    Case("endless-chunked-body", "plain", "/chunked-endless", "ok", 200),
    Case("endless-chunked-body-with-body-check", "plain", "/chunked-endless", "body_too_large",
         200, "read limit", {"body_contains": "needle"}),
    # 1-byte chunks: decoded in slices between other callbacks, cut off at the chunk-count
    # limit (max_body_bytes / 16) like any body past the read limit.
    Case("endless-body-in-1-byte-chunks", "plain", "/chunked-endless/1", "ok", 200, "HTTP 200"),
    Case("endless-body-in-1-byte-chunks-with-body-check", "plain", "/chunked-endless/1",
         "body_too_large", 200, "more chunks than the read limit", {"body_contains": "needle"}),
    Case("gzip-bomb", "plain", "/gzip-bomb", "ok", 200),
    Case("gzip-bomb-with-body-check", "plain", "/gzip-bomb", "body_too_large", 200, "read limit",
         {"body_contains": "needle"}),
    Case("deflate-bomb", "plain", "/deflate-bomb", "ok", 200),
    Case("deflate-bomb-with-body-regex", "plain", "/deflate-bomb", "body_too_large", 200,
         "read limit", {"body_regex": "need+le"}),
    Case("redirect-loop", "plain", "/redirect-loop", "redirects", 0, "too many redirects"),
    Case("max-redirects-are-followed", "plain", f"/redirect-chain/{MAX_REDIRECTS}", "ok", 200),
    Case("one-more-redirect-is-too-many", "plain", f"/redirect-chain/{MAX_REDIRECTS + 1}",
         "redirects", 0, f"limit {MAX_REDIRECTS}"),
    Case("redirect-to-ftp", "plain", "/redirect-to?url=ftp%3A//127.0.0.1/pub", "redirects", 0,
         "non-HTTP location"),
    Case("redirect-https-to-http", "tls_ok", "/redirect-to?url={plain}/ok", "ok", 200),
    Case("redirect-to-another-host", "plain", "/redirect-to?url={other}/ok", "ok", 200),
    Case("redirect-to-another-host-that-hangs", "plain", "/redirect-to?url={other}/silent",
         "timeout", 0, "within 0.5s", sends_data=False),
    Case("random-bytes", "plain", "/garbage", "protocol", 0, "malformed response"),
    Case("tcp-reset", "plain", "/reset", "connect_reset", 0, "reset"),
    Case("one-megabyte-header", "plain", "/huge-header", "protocol", 0, "malformed response"),
    Case("a-megabyte-of-small-headers", "plain", "/many-headers", "protocol", 0, "headers"),
    Case("endless-headers", "plain", "/endless-headers", "protocol", 0, "headers"),
    Case("content-length-longer-than-body", "plain", "/short-body", "protocol", 200,
         "incomplete or malformed response body"),
    Case("flood-of-100-continue", "plain", "/continue-flood", "protocol", 0,
         f"more than {MAX_INTERIM_RESPONSES} interim"),
    Case("a-few-interim-responses-are-fine", "plain",
         f"/continue-then-ok/{MAX_INTERIM_RESPONSES}", "ok", 200),
    Case("hostile-reason-phrase", "plain", "/hostile-reason", "status", 503, "HTTP 503 <script>"),
    Case("hostile-non-http-text", "plain", "/hostile-garbage", "protocol", 0, "malformed"),
    Case("tls-ok-for-reference", "tls_ok", "/ok", "ok", 200),
    Case("tls-self-signed", "tls_self_signed", "/ok", "tls", 0, "self-signed certificate"),
    Case("tls-wrong-host-name", "tls_wrong_host", "/ok", "tls", 0, "mismatch"),
    Case("tls-expired", "tls_expired", "/ok", "tls", 0, "expired"),
    Case("tls-handshake-stalls", "tls_stall", "/", "timeout", 0, "within 0.5s",
         sends_data=False),
]
# fmt: on


def url_of(hostile: Hostile, case: Case) -> str:
    server = getattr(hostile, case.server)
    path = case.path.format(
        other=quote(hostile.other_host.url(""), safe=""),
        plain=quote(hostile.plain.url(""), safe=""),
    )
    return str(server.url(path))


def make_site(url: str, name: str = "hostile", **options: Any) -> SiteConfig:
    return SiteConfig(
        name=name, kind="http", target=url, interval=2.0, **{"timeout": API_TIMEOUT, **options}
    )


def assert_one_clean_line(message: str) -> None:
    assert 0 < len(message) <= 200, message
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in message), message


async def _max_loop_gap(stop: asyncio.Event, gaps: list[float]) -> None:
    # A gap is wall time between two ticks less the time this process waited for a CPU meanwhile
    # (a loaded machine preempting the test is not the probe holding the loop).
    last, last_delay = time.perf_counter(), run_delay()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now, delay = time.perf_counter(), run_delay()
        gaps.append((now - last) - max(0.0, delay - last_delay))
        last, last_delay = now, delay


async def probe_watching_the_loop(
    prober: Prober, site: SiteConfig
) -> tuple[ProbeResult, float, float, float]:
    """(result, seconds to the verdict, seconds the machine's scheduler kept this process waiting
    meanwhile (timing.run_delay), longest time the event loop was blocked meanwhile); the times
    are less that wait."""
    stop, gaps = asyncio.Event(), [0.0]
    ticker = asyncio.create_task(_max_loop_gap(stop, gaps))
    try:
        start, delay_before = time.perf_counter(), run_delay()
        result = await prober.probe(site)
        elapsed = time.perf_counter() - start
        waited = max(0.0, run_delay() - delay_before)
    finally:
        stop.set()
        await ticker
    return result, elapsed - waited, waited, max(gaps)


async def probe_peak_memory(prober: Prober, site: SiteConfig) -> tuple[ProbeResult, int]:
    """(result, tracemalloc peak in bytes). tracemalloc slows allocation several times over, so
    timings are taken in a separate run without it."""
    tracemalloc.start()
    try:
        result = await prober.probe(site)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_prober_gives_a_clean_verdict_in_time_and_bounded_memory(
    case: Case, hostile: Hostile
) -> None:
    site = make_site(url_of(hostile, case), timeout=case.timeout, **case.options)
    async with Prober(ssl_context=hostile.trusting_context()) as prober:
        result, elapsed, waited, blocked = await probe_watching_the_loop(prober, site)
        assert (result.reason, result.status) == (case.reason, case.status), result
        assert result.ok == (case.reason == "ok")
        assert case.message.lower() in result.message.lower(), result.message
        assert_one_clean_line(result.message)
        # Both exclude the time the machine kept this process off the CPU (timing.run_delay).
        assert elapsed <= API_TIMEOUT + MARGIN, f"verdict after {elapsed:.2f}s"
        assert result.total - waited <= API_TIMEOUT + MARGIN
        # Other probes share this loop: one hostile target must not hold it for long.
        assert blocked < LOOP_GAP_BUDGET, f"event loop blocked for {blocked:.2f}s"
        if case.sends_data:
            # tracemalloc slows the parsing several times over: a longer timeout, so that
            # a verdict that races the clock (the 1-byte chunks) is the same one.
            slow_site = dataclasses.replace(site, timeout=max(3.0, case.timeout))
            again, peak = await probe_peak_memory(prober, slow_site)
            assert again.reason == case.reason, again
            assert peak < MEMORY_BUDGET, f"peak {peak / 2**20:.1f} MiB"


def test_bombs_really_are_bombs() -> None:
    # The memory bound above means something only if the body would not fit in it.
    assert BOMB_DECOMPRESSED >= 8 * MEMORY_BUDGET


async def test_redirect_to_another_host_drops_authorization_but_keeps_other_headers(
    hostile: Hostile,
) -> None:
    """What a cross-host redirect means (README): followed and judged on the final response; the
    Authorization header stays with the original host, other configured headers travel on."""
    case = next(c for c in CASES if c.id == "redirect-to-another-host")
    headers = (("Authorization", "Bearer s3cret-token"), ("X-Probe", "yes"))
    async with Prober() as prober:
        site = make_site(url_of(hostile, case), headers=headers, timeout=VERDICT_TIMEOUT)
        result = await prober.probe(site)
    assert result.ok, result
    _, received = hostile.other_host.requests[-1]
    assert "Authorization" not in received
    assert received.get("X-Probe") == "yes"


# ------------------------------------------------------------------ sentinel probe (the CLI)


def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """(the finished `sentinel` run, its wall time less the time the machine's scheduler kept
    it waiting for a CPU, sampled every 20 ms while it ran: see timing.run_delay)."""
    argv = [sys.executable, "-m", "sentinel", *args]
    start = time.perf_counter()
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    ) as child:
        waited = 0.0
        deadline = start + 60
        while True:
            waited = max(waited, run_delay(child.pid))  # 0 once it has exited: keep the last
            try:
                out, err = child.communicate(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() > deadline:
                    child.kill()
                    raise
    wall = time.perf_counter() - start
    return subprocess.CompletedProcess(argv, child.returncode, out, err), wall - waited


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The probe table by site: [result, status, total ms, ..., reason]."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        name, rest = line.split(maxsplit=1)
        cells = re.split(r"\s{2,}", rest, maxsplit=8)
        rows[name] = cells
    return rows


def test_sentinel_probe_urls_fail_fast_with_reasons_in_the_table(hostile: Hostile) -> None:
    wanted = {
        hostile.plain.url("/silent"): "timeout: no response within 1s",
        hostile.plain.url("/continue-flood"): "protocol: malformed response: more than",
        hostile.plain.url("/reset"): "connect_reset:",
        hostile.tls_expired.url("/ok"): "tls: certificate not accepted: certificate has expired",
        hostile.tls_stall.url("/"): "timeout: no TLS handshake within 1s",
    }
    proc, wall = run_cli(
        "probe", "--timeout", "1s", *wanted, env={"SSL_CERT_FILE": str(hostile.ca_bundle)}
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = table_rows(proc.stdout)
    for url, reason in wanted.items():
        result, _status, total_ms, *_, shown = rows[url]
        assert result == "FAILED"
        assert shown.startswith(reason), shown
        assert float(total_ms) <= (TIMEOUT + MARGIN) * 1000
    # Probed concurrently: the whole run is one timeout plus interpreter start-up, not five.
    assert wall < TIMEOUT + MARGIN + 3.0, wall


def test_sentinel_probe_config_applies_body_checks_to_bombs(
    hostile: Hostile, tmp_path: Path
) -> None:
    config = tmp_path / "hostile.toml"
    config.write_text(
        '[defaults]\ninterval = "2s"\ntimeout = "1s"\n'
        f'[[sites]]\nname = "gzip-bomb"\nurl = "{hostile.plain.url("/gzip-bomb")}"\n'
        'body_contains = "needle"\n'
        f'[[sites]]\nname = "endless"\nurl = "{hostile.plain.url("/chunked-endless")}"\n'
        'body_regex = "need+le"\nmax_body_bytes = "64KiB"\n'
        f'[[sites]]\nname = "headers"\nurl = "{hostile.plain.url("/endless-headers")}"\n'
        f'[[sites]]\nname = "ok"\nurl = "{hostile.plain.url("/ok")}"\n'
    )
    proc, _ = run_cli("probe", "-c", str(config))
    assert proc.returncode == 1, proc.stderr
    rows = table_rows(proc.stdout)
    assert rows["gzip-bomb"][-1].startswith("body_too_large: body larger than 1048576 bytes")
    assert rows["endless"][-1].startswith("body_too_large: body larger than 65536 bytes")
    assert rows["headers"][-1].startswith("protocol: malformed response")
    assert rows["ok"][0] == "up"


# ------------------------------------------------------------------ the running daemon

# path -> the reason the daemon must report for it
HOSTILE_IN_DAEMON = {
    "/silent": "timeout",
    "/drip": "timeout",
    "/chunked-endless/1": "body_too_large",
    "/gzip-bomb": "body_too_large",
    "/continue-flood": "protocol",
    "/endless-headers": "protocol",
    "/reset": "connect_reset",
    "/huge-header": "protocol",
}


def daemon_config(hostile: Hostile, healthy_url: str) -> str:
    lines = ['[defaults]\ninterval = "2s"\ntimeout = "1s"\nfailure_threshold = 1\n']
    for n in range(2):
        lines.append(
            f'[[sites]]\nname = "healthy-{n}"\nurl = "{healthy_url}"\ninterval = "1s"\n'
            'timeout = "500ms"\n'
        )
    for path in HOSTILE_IN_DAEMON:
        name = path.strip("/").replace("/", "-")
        extra = 'body_contains = "needle"\n' if "bomb" in path or "chunked" in path else ""
        lines.append(f'[[sites]]\nname = "{name}"\nurl = "{hostile.plain.url(path)}"\n{extra}')
    lines.append(f'[[sites]]\nname = "tls-stall"\nurl = "{hostile.tls_stall.url("/")}"\n')
    return "\n".join(lines)


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
def healthy_url() -> Iterator[str]:
    with target_server({"/ok": 200}) as target:
        yield target.url("/ok")


@pytest.mark.slow  # starts the daemon
def test_daemon_keeps_healthy_sites_on_schedule_while_hostile_ones_are_probed(
    hostile: Hostile, healthy_url: str, sentinel_proc: Callable[..., SentinelProcess]
) -> None:
    proc = sentinel_proc(daemon_config(hostile, healthy_url)).start()
    assert proc.proc is not None
    pid = proc.proc.pid
    rss_at_start = rss_peak_kib(pid)  # before the first hostile probe is due
    # Time bounds below allow for what the machine's scheduler withheld from the daemon (and from
    # this test, which measures): nothing on an idle machine, the preemption on a loaded one.
    daemon_waited_before = run_delay(pid)
    expected = {p.strip("/").replace("/", "-"): r for p, r in HOSTILE_IN_DAEMON.items()}
    expected["tls-stall"] = "timeout"
    hostile_names = list(expected)

    def successes(name: str) -> float:
        return proc.metric("sentinel_probes_total", site=name, result="success") or 0

    wait_until(lambda: all(successes(f"healthy-{n}") >= 1 for n in range(2)), timeout=60)
    # Hostile probes (every 2 s) overlap the window in which the healthy ones are counted.
    start, before = time.monotonic(), [successes(f"healthy-{n}") for n in range(2)]
    waited_before = run_delay(pid) + run_delay()
    wanted = 4
    wait_until(
        lambda: all(successes(f"healthy-{n}") >= before[n] + wanted for n in range(2)),
        timeout=60,
    )
    waited = max(0.0, run_delay(pid) + run_delay() - waited_before)
    elapsed = time.monotonic() - start - waited
    assert elapsed <= wanted * 1.0 + 1.0, f"{wanted} probes took {elapsed:.1f}s (+{waited:.1f}s)"

    metrics = proc.metrics()
    daemon_waited = max(0.0, run_delay(pid) - daemon_waited_before)
    lag_count = metrics[("sentinel_schedule_lag_seconds_count", ())]
    # "On time": started at most 100 ms late, plus whatever the scheduler withheld from the daemon.
    late_bound = next((b for b in LAG_BUCKETS if b >= 0.1 + daemon_waited), float("inf"))
    [on_time] = [
        count
        for (sample, labels), count in metrics.items()
        if sample == "sentinel_schedule_lag_seconds_bucket" and float(labels[0][1]) == late_bound
    ]
    assert lag_count > 20
    assert on_time == lag_count, f"{lag_count - on_time} probes started >{late_bound}s late"
    for name in hostile_names:
        assert proc.metric("sentinel_probes_total", site=name, result="failure"), name
        assert not proc.metric("sentinel_skipped_ticks_total", site=name), name
    status = proc.status()
    for name in hostile_names:
        last = status[name]["last"]
        assert last["total"] <= TIMEOUT + MARGIN + daemon_waited, (name, last)
        assert last["reason"] == expected[name], (name, last)
    for n in range(2):
        assert status[f"healthy-{n}"]["status"] == "up"
    # A decompressed bomb alone would add 64 MiB to the daemon's peak resident memory.
    assert rss_peak_kib(proc.proc.pid) - rss_at_start < 32 * 1024
    assert proc.stop() == 0
