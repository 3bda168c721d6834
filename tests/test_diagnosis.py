"""The DOWN email's diagnosis: which layer failed, each phase against the site's own normal, and
what happened to the local services it runs on (pure: values in, lines out)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.early.facts import DiskFacts, HostFacts, WatchFacts
from sentinel.notify.diagnosis import Normal, PhaseNormals, Phases, diagnose
from sentinel.notify.wording import TEXT_WIDTH, wrap_lines
from sentinel.probes.result import REASONS

MIB = 1024 * 1024
NORMAL = Normal(
    Phases(dns=0.003, connect=0.002, tls=0.015, processing=0.040, total=0.062), samples=16
)


def test_a_timeout_waiting_for_the_answer_compares_each_phase_with_the_usual() -> None:
    d = diagnose(
        reason="timeout",
        message="no response within 10s",
        kind="http",
        phases=Phases(dns=0.004, connect=0.002, tls=0.016),
        normal=NORMAL,
    )
    assert d.lines == (
        "Failed at the application's answer (DNS, connect and TLS handshake worked)",
        "DNS 4 ms, as usual",
        "connect 2 ms, as usual",
        "TLS handshake 16 ms, as usual",
        "no answer within 10 s; the application usually answers in 40 ms",
        "normally the whole check takes 62 ms (median of its last 16 good probes)",
    )
    assert d.summary == "" and d.local == ()


def test_connection_refused_is_the_connect_layer_and_a_slow_dns_is_said() -> None:
    d = diagnose(
        reason="connect_refused",
        message="connection refused by 127.0.0.1:8080",
        kind="http",
        phases=Phases(dns=0.300),
        normal=NORMAL,
    )
    assert d.lines[0] == "Failed at connect: no TCP connection (DNS worked)"
    assert d.lines[1] == "DNS 300 ms, usually 3 ms: slower than normal"
    assert d.lines[2] == "connection refused by 127.0.0.1:8080; usually 2 ms"


def test_an_http_404_is_the_applications_answer_with_its_time() -> None:
    d = diagnose(
        reason="status",
        message="HTTP 404 Not Found (expected 200)",
        kind="http",
        phases=Phases(connect=0.001, processing=0.035),
        normal=NORMAL,
        status=404,
    )
    assert d.lines[0] == "Failed at the application's answer (connect worked)"
    assert "answered HTTP 404 in 35 ms; usually 40 ms" in d.lines
    assert "HTTP 404 Not Found (expected 200)" in d.lines


def test_dns_tls_and_the_check_itself_are_named() -> None:
    def first(reason: str, message: str, kind: str = "http") -> str:
        return diagnose(reason=reason, message=message, kind=kind, phases=None, normal=None).lines[
            0
        ]

    assert first("dns", "cannot resolve x: no addresses").startswith("Failed at DNS")
    assert first("timeout", "cannot resolve x within 5s", "tcp").startswith("Failed at DNS")
    assert first("timeout", "no connection to x:1 within 5s", "tcp").startswith("Failed at connect")
    assert first("tls", "certificate not accepted: expired").startswith("Failed at TLS")
    assert first("timeout", "no TLS handshake within 10s").startswith("Failed at TLS")
    assert first("error", "invalid URL").startswith("Failed at sentinel's check itself")


def test_without_history_nothing_is_compared() -> None:
    d = diagnose(
        reason="timeout",
        message="no response within 10s",
        kind="http",
        phases=Phases(connect=0.002),
        normal=None,
    )
    assert d.lines == (
        "Failed at the application's answer (connect worked)",
        "connect 2 ms",
        "no answer within 10 s",
    )


def test_the_founding_story_is_one_sentence() -> None:
    app = WatchFacts(
        name="blog-app",
        source="unit blog-app.service",
        span=3600,
        oom_kills=3,
        memory=500 * MIB,
        limit=512 * MIB,
        limit_source="memory.max",
        growth_per_s=48 * MIB / 86400,
        growth_over=9 * 86400,
    )
    d = diagnose(
        reason="connect_refused",
        message="connection refused by 127.0.0.1:8080",
        kind="http",
        phases=None,
        normal=None,
        watches=[app],
        host=HostFacts(steal=0.31, disks=(DiskFacts("/", 95 * 1024 * MIB, 100 * 1024 * MIB),)),
    )
    assert d.summary == (
        "blog-app was OOM-killed 3 times in the last hour; its memory grew 48 MiB/day for 9 days."
    )
    assert d.local == (
        "blog-app (unit blog-app.service): OOM-killed 3 times and no restart in the last hour",
        "blog-app memory 500 MiB of 512 MiB (memory.max, 98%); its memory grew 48 MiB/day for "
        "9 days",
        "CPU steal 31%: the hypervisor is taking CPU time",
        "disk /: 5 GiB free of 100 GiB (95% used): nearly full",
    )


def test_a_quiet_service_and_an_unreadable_one() -> None:
    quiet = WatchFacts("db", "unit db.service", 3600, memory=100 * MIB, growth_per_s=0.0)
    broken = WatchFacts("cache", "unit cache.service", 3600, error="no cgroup x (is it running?)")
    d = diagnose(
        reason="timeout",
        message="no response within 10s",
        kind="http",
        phases=None,
        normal=None,
        watches=[quiet, broken],
    )
    assert d.summary == ""
    assert d.local == (
        "db (unit db.service): no OOM kill and no restart in the last hour",
        "db memory 100 MiB; not growing",
        "cache (unit cache.service): cannot be read (no cgroup x (is it running?))",
    )


def test_phase_normals_are_medians_of_a_bounded_ring() -> None:
    ring = PhaseNormals(size=4)
    assert ring.normal() is None
    for ms in (10, 20, 30, 40, 1000, 1000):  # the first two fall out of the ring
        ring.add(Phases(connect=ms / 1000, total=ms / 1000))
    normal = ring.normal()
    assert normal is not None and normal.samples == 4
    # median of 30, 40, 1000, 1000 ms (kept as half floats: to 0.05 %)
    assert normal.phases.connect == pytest.approx(0.52, rel=5e-4)
    assert normal.phases.dns is None  # never measured (an IP address)


def test_phase_normals_take_any_time_a_probe_can_report() -> None:
    ring = PhaseNormals(size=2)
    ring.add_times(None, 1e9, math.inf, -1.0, 7e-8)  # (none of these raises)
    ring.add_times(None, 1e9, math.nan, 0.5, 7e-8)
    normal = ring.normal()
    assert normal is not None
    assert normal.phases.connect == 65504.0  # (the largest a row holds)
    assert normal.phases.tls is None and normal.phases.processing == 0.5
    assert normal.phases.total == pytest.approx(7e-8, abs=1e-6)


times = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(
    reason=st.sampled_from(sorted(REASONS)) | st.text(max_size=30),
    message=st.text(max_size=400),
    kind=st.sampled_from(["http", "tcp"]),
    phases=st.builds(Phases, times, times, times, times, times) | st.none(),
    normal=st.builds(
        Normal, st.builds(Phases, times, times, times, times, times), st.integers(0, 16)
    )
    | st.none(),
    status=st.integers(-1, 1000),
)
def test_any_probe_gives_lines_that_wrap_to_78_columns(
    reason: str,
    message: str,
    kind: str,
    phases: Phases | None,
    normal: Normal | None,
    status: int,
) -> None:
    d = diagnose(
        reason=reason, message=message, kind=kind, phases=phases, normal=normal, status=status
    )
    assert d.lines and d.lines[0].startswith("Failed at ")
    for line in d.lines:
        assert "\n" not in line
        assert not re.search(r"\b(nan|inf)\b", line.replace(message, "")), line
    assert all(len(line) <= TEXT_WIDTH for line in wrap_lines(f"  - {x}" for x in d.lines))
