"""History's SQL: the `history_*` tables of the state store (schema in sentinel.store).

Rows are merged, never overwritten: a flush reads the stored row, adds the pending delta
(`Rollup.merge`, exact) and writes the sum, in one transaction with the other rows of its batch.
A delta leaves memory only once its transaction has committed, so a kill -9 at any point loses
at most the unwritten deltas and never counts a probe twice.

`excused_ms` (downtime during a maintenance window or a silence) on the rollups and the
incidents came with the store's schema migration 9; a store of an older schema opened read-only
(by `sentinel status`) reads as excused_ms = 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup, decode_hist, encode_hist
from sentinel.store import Store

HOUR = "history_hour"
DAY = "history_day"
_TABLES = (HOUR, DAY)
MESSAGE_LIMIT = 300  # characters of a failure message kept in the incident log
# Per store: whether its history tables have excused_ms (checked once).
_has_excused: WeakKeyDictionary[Store, bool] = WeakKeyDictionary()


def _excused(store: Store, alias: str) -> str:
    """The column's expression in a SELECT: the column, or 0 in a store not migrated."""
    has = _has_excused.get(store)
    if has is None:
        rows = store.query("PRAGMA table_info(history_hour)")
        has = _has_excused[store] = any(str(r[1]) == "excused_ms" for r in rows)
    return f"{alias}.excused_ms" if has else "0"


@dataclass(frozen=True, slots=True)
class Incident:
    site: str
    started_ms: int
    ended_ms: int | None  # None: still open
    first_reason: str
    first_message: str
    last_reason: str
    last_message: str
    alerts: int
    excused_ms: int = 0  # of its downtime, in a maintenance window or a silence

    def duration_ms(self, now_ms: int) -> int:
        end = self.ended_ms if self.ended_ms is not None else now_ms
        return max(0, end - self.started_ms)


def _site_ids(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name in names:
        row = conn.execute("SELECT id FROM history_site WHERE name = ?", (name,)).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO history_site (name) VALUES (?)", (name,))
            ids[name] = int(cur.lastrowid or 0)
        else:
            ids[name] = int(row[0])
    return ids


def _merge_row(
    conn: sqlite3.Connection, table: str, site_id: int, period: int, delta: Rollup
) -> Rollup:
    """Add `delta` to the stored row; returns the new total."""
    assert table in _TABLES
    row = conn.execute(
        f"SELECT probes, failures, covered_ms, down_ms, lat_max_us, hist, excused_ms FROM {table}"
        " WHERE site = ? AND period = ?",
        (site_id, period),
    ).fetchone()
    total = delta.copy()
    if row is not None:
        total.merge(_rollup(row))
    conn.execute(
        f"INSERT OR REPLACE INTO {table} (site, period, probes, failures, covered_ms, down_ms,"
        " lat_max_us, hist, excused_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            site_id,
            period,
            total.probes,
            total.failures,
            total.covered_ms,
            total.down_ms,
            total.lat_max_us,
            encode_hist(total.hist),
            total.excused_ms,
        ),
    )
    return total


def _rollup(row: Sequence[Any]) -> Rollup:
    probes, failures, covered, down, lat_max, hist, excused = row
    try:
        decoded = decode_hist(bytes(hist)) if hist else {}
    except (ValueError, TypeError):
        decoded = {}  # a damaged histogram loses its latency, not the row's counts
    return Rollup(
        int(probes), int(failures), int(covered), int(down), int(lat_max), decoded, int(excused)
    )


Written = dict[tuple[str, str, int], Rollup]  # (table, site, period) -> the stored total


def write_hours(store: Store, deltas: Mapping[tuple[str, int], Rollup]) -> Written:
    """Merge hourly deltas ((site, hour number) -> Rollup) into the hour and day tables, in one
    transaction. Returns the rows' new totals (readers keep their copies current with them)."""
    days: dict[tuple[str, int], Rollup] = {}
    for (name, hour), delta in deltas.items():
        key = (name, hour * HOUR_MS // DAY_MS)
        if key in days:
            days[key].merge(delta)
        else:
            days[key] = delta.copy()
    written: Written = {}
    with store.write() as conn:
        ids = _site_ids(conn, sorted({name for name, _ in deltas}))
        for (name, hour), delta in deltas.items():
            written[(HOUR, name, hour)] = _merge_row(conn, HOUR, ids[name], hour, delta)
        for (name, day), delta in days.items():
            written[(DAY, name, day)] = _merge_row(conn, DAY, ids[name], day, delta)
    return written


def read_rollups(
    store: Store,
    table: str,
    since_period: int,
    site: str | None = None,
    *,
    until_period: int | None = None,
    latency: bool = True,
    sites: Sequence[str] | None = None,
) -> dict[str, dict[int, Rollup]]:
    """site -> period -> Rollup for since_period <= period (< until_period), of one site, of
    `sites`, or of all. `latency` False skips the histograms (much cheaper for many rows)."""
    assert table in _TABLES
    where = ""
    params: list[object] = [since_period]
    if until_period is not None:
        where += " AND r.period < ?"
        params.append(until_period)
    if site is not None:
        where += " AND s.name = ?"
        params.append(site)
    if sites is not None:
        where += f" AND s.name IN ({','.join('?' * len(sites))})"
        params.extend(sites)
    hist = "r.hist" if latency else "x''"
    rows = store.query(
        "SELECT s.name, r.period, r.probes, r.failures, r.covered_ms, r.down_ms, r.lat_max_us,"
        f" {hist}, {_excused(store, 'r')} FROM {table} r JOIN history_site s ON s.id = r.site"
        f" WHERE r.period >= ?{where}",
        params,
    )
    out: dict[str, dict[int, Rollup]] = {}
    for name, period, *rest in rows:
        out.setdefault(str(name), {})[int(period)] = _rollup(rest)
    return out


def read_day_figures(
    store: Store, since_day: int, sites: Sequence[str]
) -> list[tuple[str, int, int, int, int]]:
    """(site, day, covered_ms, down_ms, excused_ms) of `sites` from since_day on: the daily
    figures alone, as plain tuples (the status page reads 90 of them a site)."""
    rows = store.query(
        f"SELECT s.name, r.period, r.covered_ms, r.down_ms, {_excused(store, 'r')}"
        " FROM history_site s JOIN history_day r ON r.site = s.id"
        f" WHERE s.name IN ({','.join('?' * len(sites))}) AND r.period >= ?",
        (*sites, since_day),
    )
    return [(str(n), int(p), int(c), int(d), int(e)) for n, p, c, d, e in rows]


# ---------------------------------------------------------------------------- incidents


def incident_opened(
    store: Store, site: str, started_ms: int, reason: str, message: str, *, alerts: int = 1
) -> None:
    """A site went DOWN (idempotent: the same incident opened again changes nothing).
    `alerts` 0: its DOWN alert was held (a maintenance window, a silence, flapping)."""
    message = message[:MESSAGE_LIMIT]
    with store.write() as conn:
        site_id = _site_ids(conn, [site])[site]
        conn.execute(
            "INSERT OR IGNORE INTO history_incident (site, started_ms, ended_ms, first_reason,"
            " first_message, last_reason, last_message, alerts)"
            " VALUES (?, ?, NULL, ?, ?, '', '', ?)",
            (site_id, started_ms, reason, message, alerts),
        )


def incident_updated(
    store: Store,
    site: str,
    started_ms: int,
    *,
    last: tuple[str, str] | None = None,
    alerts: int = 0,
    ended_ms: int | None = None,
    excused_ms: int = 0,
) -> None:
    """A reminder (alerts), the latest failure (last), downtime in a maintenance window or a
    silence (excused_ms, added) or the recovery (ended_ms) of an incident."""
    with store.write() as conn:
        site_id = _site_ids(conn, [site])[site]
        if last is not None:
            # The same as the first is stored as '' (most incidents have one reason throughout).
            conn.execute(
                "UPDATE history_incident SET"
                " last_reason = CASE WHEN first_reason = ?1 AND first_message = ?2"
                " THEN '' ELSE ?1 END,"
                " last_message = CASE WHEN first_reason = ?1 AND first_message = ?2"
                " THEN '' ELSE ?2 END"
                " WHERE site = ?3 AND started_ms = ?4",
                (last[0], last[1][:MESSAGE_LIMIT], site_id, started_ms),
            )
        conn.execute(
            "UPDATE history_incident SET alerts = alerts + ?, ended_ms = COALESCE(?, ended_ms)"
            " WHERE site = ? AND started_ms = ?",
            (alerts, ended_ms, site_id, started_ms),
        )
        if excused_ms:
            conn.execute(
                "UPDATE history_incident SET excused_ms = excused_ms + ?"
                " WHERE site = ? AND started_ms = ?",
                (excused_ms, site_id, started_ms),
            )


def read_incidents(
    store: Store, *, site: str | None = None, limit: int = 10, since_ms: int = 0
) -> list[Incident]:
    """The latest incidents first."""
    where = " AND s.name = ?" if site is not None else ""
    params: list[object] = [since_ms]
    if site is not None:
        params.append(site)
    params.append(max(0, limit))
    rows = store.query(
        "SELECT s.name, i.started_ms, i.ended_ms, i.first_reason, i.first_message, i.last_reason,"
        f" i.last_message, i.alerts, {_excused(store, 'i')} FROM history_incident i"
        f" JOIN history_site s ON s.id = i.site WHERE i.started_ms >= ?{where}"
        " ORDER BY i.started_ms DESC LIMIT ?",
        params,
    )
    return [_incident(r) for r in rows]


def _incident(r: Sequence[Any]) -> Incident:
    return Incident(
        str(r[0]),
        int(r[1]),
        None if r[2] is None else int(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5] or r[3]),  # '' = the same as the first
        str(r[6]) if r[5] else str(r[4]),
        int(r[7]),
        int(r[8]),
    )


# ---------------------------------------------------------------------------- retention


def prune(
    store: Store, now_ms: int, *, keep_hourly_ms: int, keep_daily_ms: int, keep_incidents_ms: int
) -> int:
    """Delete rows older than their retention; returns how many went."""
    with store.write() as conn:
        gone = conn.execute(
            "DELETE FROM history_hour WHERE period < ?", ((now_ms - keep_hourly_ms) // HOUR_MS,)
        ).rowcount
        gone += conn.execute(
            "DELETE FROM history_day WHERE period < ?", ((now_ms - keep_daily_ms) // DAY_MS,)
        ).rowcount
        gone += conn.execute(
            "DELETE FROM history_incident WHERE COALESCE(ended_ms, ?) < ?",
            (now_ms, now_ms - keep_incidents_ms),
        ).rowcount
        # A site with no rows left (removed from the config long ago) loses its id too.
        gone += conn.execute(
            "DELETE FROM history_site WHERE id NOT IN (SELECT site FROM history_hour)"
            " AND id NOT IN (SELECT site FROM history_day)"
            " AND id NOT IN (SELECT site FROM history_incident)"
        ).rowcount
    return int(gone)


def read_latest_incidents(
    store: Store, per_site: int, sites: Sequence[str] | None = None
) -> list[Incident]:
    """The latest `per_site` incidents of every site (or of `sites`), newest first."""
    where = "" if sites is None else f" WHERE s.name IN ({','.join('?' * len(sites))})"
    rows = store.query(
        "SELECT name, started_ms, ended_ms, first_reason, first_message, last_reason,"
        f" last_message, alerts, x FROM (SELECT s.name, i.*, {_excused(store, 'i')} AS x,"
        " ROW_NUMBER() OVER (PARTITION BY i.site ORDER BY i.started_ms DESC) AS n"
        f" FROM history_incident i JOIN history_site s ON s.id = i.site{where})"
        " WHERE n <= ? ORDER BY started_ms DESC",
        (*(sites or ()), per_site),
    )
    return [_incident(r) for r in rows]
