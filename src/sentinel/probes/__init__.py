"""Probes turn a site into a `ProbeResult`; they never raise into the scheduler."""

from sentinel.probes.result import PHASES, ProbeResult

__all__ = ["PHASES", "ProbeResult"]
