"""Metrics mirror results and states, and a removed site leaves no series behind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from sentinel.metrics import Metrics, format_sample
from sentinel.monitor import SiteState, Status
from sentinel.probes.result import ProbeResult


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def failed(reason: str = "timeout") -> ProbeResult:
    return ProbeResult(ok=False, reason=reason, message="x", started_at=0.0, total=1.5)


def test_observe_fills_the_contract_metrics() -> None:
    m = Metrics(process=False)
    ok = ProbeResult(
        ok=True,
        reason="ok",
        message="",
        started_at=0.0,
        total=0.12,
        status=200,
        dns=0.001,
        connect=0.002,
        processing=0.1,
        transfer=0.017,
        tls_expiry=2_000_000_000.0,
    )
    m.observe("blog", ok, SiteState(site="blog", status=Status.UP), 0.0)
    m.observe(
        "shop", failed(), SiteState(site="shop", status=Status.DOWN, consecutive_failures=3), 42.0
    )
    s = samples(m)
    assert s[("sentinel_probe_success", (("site", "blog"),))] == 1
    assert s[("sentinel_http_status_code", (("site", "blog"),))] == 200
    assert s[("sentinel_probe_phase_seconds", (("phase", "processing"), ("site", "blog")))] == 0.1
    assert s[("sentinel_tls_cert_expiry_timestamp_seconds", (("site", "blog"),))] == 2e9
    assert s[("sentinel_site_up", (("site", "shop"),))] == 0
    assert s[("sentinel_consecutive_failures", (("site", "shop"),))] == 3
    assert s[("sentinel_downtime_seconds_total", (("site", "shop"),))] == 42.0
    assert s[("sentinel_probes_total", (("result", "failure"), ("site", "shop")))] == 1
    assert s[("sentinel_probe_failures_total", (("reason", "timeout"), ("site", "shop")))] == 1
    assert s[("sentinel_probe_duration_seconds_count", (("site", "shop"),))] == 1


def test_removed_site_loses_every_series() -> None:
    m = Metrics(process=False)
    for reason in ("timeout", "dns", "status"):
        m.observe("gone", failed(reason), SiteState(site="gone", status=Status.DOWN), 1.0)
    m.skipped("gone")
    m.observe("kept", failed(), SiteState(site="kept"), 0.0)
    m.remove_site("gone")
    text = m.render().decode()
    assert 'site="gone"' not in text
    assert 'site="kept"' in text
    # And it can come back (a re-added site starts fresh).
    m.observe("gone", failed(), SiteState(site="gone"), 0.0)
    assert samples(m)[("sentinel_probes_total", (("result", "failure"), ("site", "gone")))] == 1


def test_per_site_series_match_what_prometheus_client_wrote() -> None:
    """The per-site families are formatted by sentinel itself (memory, CPU): the samples must be
    exactly those prometheus_client's Gauge/Counter/Histogram children gave for the same events
    (checked once against the old implementation; pinned here)."""
    m = Metrics(process=False)
    ok = ProbeResult(
        ok=True,
        reason="ok",
        message="",
        started_at=0.0,
        total=0.12,
        status=200,
        dns=0.001,
        connect=0.002,
        tls=0.003,
        processing=0.1,
        transfer=0.017,
        tls_expiry=2_000_000_000.0,
    )
    slow = ProbeResult(ok=False, reason="timeout", message="x", started_at=0.0, total=31.0)
    odd = ProbeResult(ok=False, reason="weird", message="x", started_at=0.0, total=0.005)
    m.add_site(SiteState(site="restored", status=Status.DOWN, consecutive_failures=4))
    m.add_site(SiteState(site="fresh"))
    quoted = 'we"ird\\site'
    m.observe(quoted, ok, SiteState(site=quoted, status=Status.UP), 0.0)
    m.observe("shop", slow, SiteState(site="shop", consecutive_failures=1), 0.0)
    m.observe("shop", odd, SiteState(site="shop", status=Status.DOWN, consecutive_failures=2), 12.5)
    m.observe("shop", ok, SiteState(site="shop", status=Status.UP), 3.25)
    m.skipped("shop")
    m.skipped("fresh", 2)
    s = samples(m)
    # Families added since that implementation have their own test below.
    newer = ("sentinel_site_state", "sentinel_site_flapping")
    per_site = {
        k: v for k, v in s.items() if any(name == "site" for name, _ in k[1]) and k[0] not in newer
    }
    shop, q = (("site", "shop"),), (("site", quoted),)
    expected = {
        ("sentinel_site_up", (("site", "restored"),)): 0.0,
        ("sentinel_skipped_ticks_total", (("site", "fresh"),)): 2.0,
        ("sentinel_skipped_ticks_total", shop): 1.0,
        ("sentinel_site_up", shop): 1.0,
        ("sentinel_site_up", q): 1.0,
        ("sentinel_probe_success", shop): 1.0,
        ("sentinel_probe_success", q): 1.0,
        ("sentinel_consecutive_failures", shop): 0.0,
        ("sentinel_consecutive_failures", q): 0.0,
        ("sentinel_downtime_seconds_total", shop): 15.75,
        ("sentinel_downtime_seconds_total", q): 0.0,
        ("sentinel_probes_total", (("result", "success"), *shop)): 1.0,
        ("sentinel_probes_total", (("result", "failure"), *shop)): 2.0,
        ("sentinel_probes_total", (("result", "success"), *q)): 1.0,
        ("sentinel_probes_total", (("result", "failure"), *q)): 0.0,
        ("sentinel_probe_failures_total", (("reason", "error"), *shop)): 1.0,
        ("sentinel_probe_failures_total", (("reason", "timeout"), *shop)): 1.0,
        ("sentinel_http_status_code", shop): 200.0,
        ("sentinel_http_status_code", q): 200.0,
        ("sentinel_tls_cert_expiry_timestamp_seconds", shop): 2e9,
        ("sentinel_tls_cert_expiry_timestamp_seconds", q): 2e9,
        ("sentinel_probe_duration_seconds_count", shop): 3.0,
        ("sentinel_probe_duration_seconds_sum", shop): 31.125,
        ("sentinel_probe_duration_seconds_count", q): 1.0,
        ("sentinel_probe_duration_seconds_sum", q): 0.12,
    }
    for site, phases in (
        (shop, (0.001, 0.002, 0.003, 0.1, 0.017)),
        (q, (0.001, 0.002, 0.003, 0.1, 0.017)),
    ):
        for phase, value in zip(
            ("dns", "connect", "tls", "processing", "transfer"), phases, strict=True
        ):
            expected[("sentinel_probe_phase_seconds", (("phase", phase), *site))] = value
    # Histogram buckets are cumulative: shop saw 0.005 (in le=0.005), 0.12 (le=0.25) and 31 s
    # (past the last bound: only +Inf).
    bounds = (
        "0.005",
        "0.01",
        "0.025",
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1.0",
        "2.5",
        "5.0",
        "10.0",
        "30.0",
        "+Inf",
    )
    shop_cumulative = (1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3)
    q_cumulative = (0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
    for le, a, b in zip(bounds, shop_cumulative, q_cumulative, strict=True):
        expected[("sentinel_probe_duration_seconds_bucket", (("le", le), *shop))] = float(a)
        expected[("sentinel_probe_duration_seconds_bucket", (("le", le), *q))] = float(b)
    assert per_site == expected


def test_rendering_in_chunks_gives_the_same_text() -> None:
    m = Metrics(process=False)
    for n in range(25):
        m.observe(f"s{n}", failed(), SiteState(site=f"s{n}", status=Status.DOWN), 1.0)
    assert b"".join(m.render_chunks(sites_per_chunk=4)) == m.render()
    assert samples(m)[("sentinel_site_up", (("site", "s24"),))] == 0


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12))
def test_values_are_written_as_prometheus_client_writes_them(value: float) -> None:
    assert format_sample(value) == floatToGoString(value)


def test_site_state_is_one_hot_and_pending_shows_before_down() -> None:
    m = Metrics(process=False)
    m.add_site(SiteState(site="fresh"))
    m.observe(
        "shop", failed(), SiteState(site="shop", status=Status.UP, consecutive_failures=1), 0.0
    )
    m.observe(
        "down", failed(), SiteState(site="down", status=Status.DOWN, consecutive_failures=3), 0.0
    )
    s = samples(m)

    def state_of(site: str) -> list[str]:
        return [
            dict(labels)["state"]
            for (name, labels), value in s.items()
            if name == "sentinel_site_state" and dict(labels)["site"] == site and value == 1
        ]

    assert state_of("fresh") == ["unknown"]
    assert state_of("shop") == ["pending"]
    assert state_of("down") == ["down"]
    assert s[("sentinel_site_flapping", (("site", "shop"),))] == 0
