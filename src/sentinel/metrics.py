"""The Prometheus registry: mirrors probe results, site states, mail and config health.

Metrics only mirror; the monitor and the store own the truth. Every per-site series is removed when
the site leaves the config, so the label sets stay bounded by the config, never by time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from sentinel import __version__
from sentinel.monitor import SiteState, Status
from sentinel.probes.result import PHASES, REASONS, ProbeResult

PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EMAIL_KINDS = (
    "down",
    "still_down",
    "recovered",
    "certificate",
    "test",
    "creeping",
    "disk",
    "slower",
    "self",
    "steal",
    "oom",
    "resolved",
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class _SiteChildren:
    """The per-site metric children, looked up once per site instead of once per probe."""

    success: Gauge
    duration: Histogram
    phases: tuple[tuple[str, Gauge], ...]
    failures_in_row: Gauge
    downtime: Counter
    ok_total: Counter
    fail_total: Counter
    status_code: Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        # `_created` series would double every counter's series for a value nobody graphs.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.info = Gauge("sentinel_build_info", "sentinel's version", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self.probe_success = Gauge(
            "sentinel_probe_success", "1 if the last probe passed, else 0", ["site"], registry=r
        )
        self.probe_duration = Histogram(
            "sentinel_probe_duration_seconds",
            "Total probe time, connect to last byte",
            ["site"],
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.probe_phase = Gauge(
            "sentinel_probe_phase_seconds",
            "The last probe's time per phase (dns, connect, tls, processing, transfer)",
            ["site", "phase"],
            registry=r,
        )
        self.site_up = Gauge(
            "sentinel_site_up", "Alert state after thresholds: 1 up, 0 down", ["site"], registry=r
        )
        self.consecutive_failures = Gauge(
            "sentinel_consecutive_failures", "Failed probes in a row", ["site"], registry=r
        )
        self.downtime = Counter(
            "sentinel_downtime_seconds", "Time spent DOWN", ["site"], registry=r
        )
        self.probes = Counter("sentinel_probes", "Probes by result", ["site", "result"], registry=r)
        self.probe_failures = Counter(
            "sentinel_probe_failures",
            "Failed probes by reason (timeout, connect_refused, dns, tls, status, body, slow, ...)",
            ["site", "reason"],
            registry=r,
        )
        self.http_status = Gauge(
            "sentinel_http_status_code", "The last HTTP status (0 if none)", ["site"], registry=r
        )
        self.tls_expiry = Gauge(
            "sentinel_tls_cert_expiry_timestamp_seconds",
            "Expiry (NotAfter) of the served certificate, seconds since the epoch",
            ["site"],
            registry=r,
        )
        self.skipped_ticks = Counter(
            "sentinel_skipped_ticks",
            "Scheduled probes skipped because the previous probe of the site was still running",
            ["site"],
            registry=r,
        )
        self.schedule_lag = Histogram(
            "sentinel_schedule_lag_seconds",
            "How late probes start compared to their schedule",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.sites = Gauge("sentinel_sites", "Sites in the configuration", registry=r)
        self.emails_sent = Counter(
            "sentinel_emails_sent", "Emails delivered, by kind", ["kind"], registry=r
        )
        self.email_failures = Counter(
            "sentinel_email_failures", "Failed email delivery attempts", registry=r
        )
        self.outbox_pending = Gauge(
            "sentinel_outbox_pending", "Emails waiting to be (re)sent", registry=r
        )
        self.outbox_dropped = Counter(
            "sentinel_outbox_dropped",
            "Emails dropped because the outbox was full",
            registry=r,
        )
        self.store_errors = Counter(
            "sentinel_store_errors", "Failed writes to the state store", registry=r
        )
        self.reload_ok = Gauge(
            "sentinel_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded",
            registry=r,
        )
        self.reload_time = Gauge(
            "sentinel_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration (re)load",
            registry=r,
        )
        for kind in EMAIL_KINDS:
            self.emails_sent.labels(kind)
        self._children: dict[str, _SiteChildren] = {}

    # ------------------------------------------------------------------ per site

    def _site(self, site: str) -> _SiteChildren:
        children = self._children.get(site)
        if children is None:
            children = _SiteChildren(
                success=self.probe_success.labels(site),
                duration=self.probe_duration.labels(site),
                phases=tuple((p, self.probe_phase.labels(site, p)) for p in PHASES),
                failures_in_row=self.consecutive_failures.labels(site),
                downtime=self.downtime.labels(site),
                ok_total=self.probes.labels(site, "success"),
                fail_total=self.probes.labels(site, "failure"),
                status_code=self.http_status.labels(site),
            )
            self._children[site] = children
        return children

    def add_site(self, state: SiteState) -> None:
        """Show a restored UP/DOWN state before the first probe. Probe series appear with the first
        probe: a 0 before then would read as a failure."""
        self.set_state(state)

    def set_state(self, state: SiteState) -> None:
        # sentinel_site_up stays absent while the state is UNKNOWN (neither up nor down yet).
        if state.status is Status.DOWN:
            self.site_up.labels(state.site).set(0)
        elif state.status is Status.UP:
            self.site_up.labels(state.site).set(1)
        if state.site in self._children:
            self._children[state.site].failures_in_row.set(state.consecutive_failures)

    def observe(self, site: str, result: ProbeResult, state: SiteState, downtime: float) -> None:
        c = self._site(site)
        c.success.set(1 if result.ok else 0)
        c.duration.observe(result.total)
        for name, gauge in c.phases:
            value = result.phase(name)
            gauge.set(value if value is not None else 0.0)
        c.status_code.set(result.status)
        if result.ok:
            c.ok_total.inc()
        else:
            c.fail_total.inc()
            reason = result.reason if result.reason in REASONS else "error"
            self.probe_failures.labels(site, reason).inc()
        if result.tls_expiry is not None:
            self.tls_expiry.labels(site).set(result.tls_expiry)
        if downtime > 0:
            c.downtime.inc(downtime)
        self.set_state(state)

    def remove_site(self, site: str) -> None:
        """Drop every series of a site (it left the config)."""
        self._children.pop(site, None)
        for metric in (
            self.probe_success,
            self.probe_duration,
            self.site_up,
            self.consecutive_failures,
            self.downtime,
            self.http_status,
            self.tls_expiry,
            self.skipped_ticks,
        ):
            _remove(metric, site)
        for phase in PHASES:
            _remove(self.probe_phase, site, phase)
        for result in ("success", "failure"):
            _remove(self.probes, site, result)
        for reason in REASONS:
            _remove(self.probe_failures, site, reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
