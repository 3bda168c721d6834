"""sentinel: an uptime-alerting daemon that probes sites, emails the owner and exports metrics."""

__version__ = "0.1.0"
