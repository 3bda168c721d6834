"""History: per-site hourly and daily rollups and the incident log, kept in the state store.

`rollup` is the pure arithmetic (histograms, intervals, coverage); `settings` parses the
`[history]` and `[status_page]` sections; `db` is the SQL; `recorder` batches what the daemon
observes and writes it once a minute; `query` reads the figures the status page and API show.
"""
