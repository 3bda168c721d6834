"""`ProbeResult`: the value every probe returns, whatever happened on the wire."""

from __future__ import annotations

from dataclasses import dataclass

# Phase names as exported in `sentinel_probe_phase_seconds{phase=...}` (blackbox_exporter's set).
PHASES = ("dns", "connect", "tls", "processing", "transfer")

# Short, stable, machine-readable failure reasons (also used in emails and the JSON API).
REASONS = (
    "ok",
    "timeout",
    "connect_refused",
    "connect_reset",
    "connect",
    "dns",
    "tls",
    "status",
    "body",
    "body_too_large",
    "slow",
    "protocol",
    "redirects",
    "error",
)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome. `reason` is "ok" when `ok`; `message` is for a person."""

    ok: bool
    reason: str
    message: str
    started_at: float  # wall clock, seconds since the epoch
    total: float  # seconds, connect to last byte
    status: int = 0  # HTTP status, 0 when there was none
    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    processing: float | None = None  # request sent -> first byte of the response
    transfer: float | None = None  # first byte -> last byte read
    tls_expiry: float | None = None  # earliest NotAfter in the served chain, epoch seconds
    tls_expiry_subject: str | None = None  # the subject of the certificate tls_expiry is of

    def phase(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value

    @classmethod
    def failure(
        cls, reason: str, message: str, started_at: float, total: float, status: int = 0
    ) -> ProbeResult:
        return cls(
            ok=False,
            reason=reason,
            message=message,
            started_at=started_at,
            total=total,
            status=status,
        )
