"""The store's schema: one list of migrations, append-only.

MIGRATIONS[i] takes the schema from version i to i + 1, and `meta.schema_version` says how many
have run. A change of schema appends a step (never edits one): a store written by any earlier
version is brought up to date at open, and a newer store is refused rather than misread.
"""

from __future__ import annotations

# Keys of `meta` that the store itself owns; set_meta refuses them.
META_SCHEMA_VERSION = "schema_version"
META_DROPPED = "outbox_dropped_total"
RESERVED_META = frozenset({META_SCHEMA_VERSION, META_DROPPED})

# Migrations: MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE site_state (
            site TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        # AUTOINCREMENT: an id is never reused, so a stale id held by the sender (of an item the
        # cap dropped meanwhile) can never delete a newer email.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            site TEXT NOT NULL,
            created_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            permanent_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            message BLOB NOT NULL
        )""",
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            site TEXT NOT NULL,
            created_at REAL NOT NULL,
            failed_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL,
            message BLOB NOT NULL
        )""",
    ),
    (
        # A site's latency-drift history (LatencyTracker.dump) and its "slower" warning state
        # (JSON), so a restart neither blinds drift detection for a day nor loses a warning.
        """CREATE TABLE latency_history (
            site TEXT PRIMARY KEY,
            history BLOB NOT NULL,
            warning TEXT,
            saved_at REAL NOT NULL
        )""",
    ),
    (
        # The memory, disk and CPU-steal trends (series and warning state as JSON, keyed
        # "watch:<name>", "disk:<mount>", "steal:cpu"): a restart neither warns again about a
        # continuing trend nor loses the RESOLVED of a warning already sent.
        """CREATE TABLE trend_history (
            key TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            saved_at REAL NOT NULL
        )""",
    ),
    (
        # Run-time silences (`sentinel silence`); site NULL = every site. Expired rows are pruned.
        """CREATE TABLE silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT,
            until REAL NOT NULL,
            reason TEXT NOT NULL,
            created REAL NOT NULL
        )""",
    ),
    (
        # Channels (webhook, apprise, alertmanager besides email): each outbox item and dead
        # letter names its channel (the rows from before are emails), the incident it belongs to
        # (stale reminders collapse), the alert as JSON (what a fallback channel is sent), and
        # whether it was already handed to the fallback channel.
        "ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'",
        "ALTER TABLE outbox ADD COLUMN incident TEXT",
        "ALTER TABLE outbox ADD COLUMN alert TEXT",
        "ALTER TABLE outbox ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE dead_letters ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'",
        "ALTER TABLE dead_letters ADD COLUMN incident TEXT",
        "ALTER TABLE dead_letters ADD COLUMN alert TEXT",
        "CREATE INDEX outbox_by_channel ON outbox (channel, site, id)",
    ),
    (
        # A heartbeat's state (sentinel.heartbeats.state.HeartbeatState as JSON): its last ping,
        # last output and open incident survive a restart.
        """CREATE TABLE heartbeat_state (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
    (
        # History (sentinel.history): hourly and daily rollups and the incident log. Sites by a
        # small id, times as integer hour/day numbers and milliseconds, the latency histogram as
        # sparse bytes: ~40 bytes a row keeps a site under 64 KiB at full retention.
        """CREATE TABLE history_site (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        )""",
        """CREATE TABLE history_hour (
            site INTEGER NOT NULL,
            period INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            covered_ms INTEGER NOT NULL,
            down_ms INTEGER NOT NULL,
            lat_max_us INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (site, period)
        ) WITHOUT ROWID""",
        """CREATE TABLE history_day (
            site INTEGER NOT NULL,
            period INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            covered_ms INTEGER NOT NULL,
            down_ms INTEGER NOT NULL,
            lat_max_us INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (site, period)
        ) WITHOUT ROWID""",
        """CREATE TABLE history_incident (
            site INTEGER NOT NULL,
            started_ms INTEGER NOT NULL,
            ended_ms INTEGER,
            first_reason TEXT NOT NULL,
            first_message TEXT NOT NULL,
            last_reason TEXT NOT NULL,
            last_message TEXT NOT NULL,
            alerts INTEGER NOT NULL,
            PRIMARY KEY (site, started_ms)
        ) WITHOUT ROWID""",
    ),
    (
        # Outage grouping (sentinel.notify.grouping): a DOWN or RECOVERED waits group_wait in the
        # outbox with `hold` = its grouping key (the host); a group replaces its items in one
        # transaction. outbox_threads: the email an incident's DOWN went out in (a group's), so
        # its reminders and RECOVERED reply to that email.
        "ALTER TABLE outbox ADD COLUMN hold TEXT",
        """CREATE TABLE outbox_threads (
            channel TEXT NOT NULL,
            incident TEXT NOT NULL,
            root TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (channel, incident)
        ) WITHOUT ROWID""",
    ),
    (
        # History keeps downtime during a maintenance window or a silence apart (excused_ms):
        # uptime counts it neither up nor down (sentinel.history.rollup.uptime_of).
        "ALTER TABLE history_hour ADD COLUMN excused_ms INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE history_day ADD COLUMN excused_ms INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE history_incident ADD COLUMN excused_ms INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # The sender looks for held items before every send: without this (partial, so tiny)
        # index that look read the whole outbox, messages included (2 ms with 500 queued).
        "CREATE INDEX outbox_held ON outbox (channel, id) WHERE hold IS NOT NULL",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
