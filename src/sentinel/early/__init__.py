"""Early warnings: memory creep of local services, disks filling, CPU steal, sites getting slower,
and sentinel watching its own memory.

Pure: `config` (parse_early), `trend` (the detector), `warnings` (alert policy), `latency` (drift),
`messages` (emails), `events`. I/O: `sources` (thin readers), `service` (EarlyWarnings, the async
shell). Nothing is imported here, so `sentinel.config` can import `sentinel.early.config` cheaply.
"""
