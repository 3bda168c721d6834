"""sentinel: an uptime-alerting daemon that probes sites, emails the owner and exports metrics."""

__version__ = "0.1.0"
# The one place the default User-Agent of HTTP probes is built (config default, `sentinel probe`).
USER_AGENT = f"sentinel-uptime/{__version__}"
