"""Heartbeats: cron jobs and workers ping sentinel, and sentinel alarms when a ping is late or
says the job failed (issue 16).

config    `[[heartbeats]]` -> frozen `HeartbeatConfig`s, the schedule arithmetic, token files
state     the pure state machine (new / up / running / late / failed), `now` passed in
messages  the LATE / FAILED / RECOVERED emails (pure)
endpoint  the `/ping/<name>...` handler on the web server: tokens, body cap, rate limit
service   the daemon's part: states in memory and in the store, the lateness timer, metrics
client    `sentinel ping` and `sentinel wrap`
"""
