"""Metrics mirror results and states, and a removed site leaves no series behind."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sentinel.metrics import Metrics
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
    m.skipped_ticks.labels("gone").inc()
    m.observe("kept", failed(), SiteState(site="kept"), 0.0)
    m.remove_site("gone")
    text = m.render().decode()
    assert 'site="gone"' not in text
    assert 'site="kept"' in text
    # And it can come back (a re-added site starts fresh).
    m.observe("gone", failed(), SiteState(site="gone"), 0.0)
    assert samples(m)[("sentinel_probes_total", (("result", "failure"), ("site", "gone")))] == 1
