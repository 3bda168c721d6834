"""`sentinel report [--month YYYY-MM] [--format text|csv|json]`: a month's uptime per site.

Reads the daily rollups and the incident log of the store, read-only (works while the daemon
runs). Months are UTC calendar months; the current month counts up to now. Uptime is over the
watched time: time nobody watched is reported as such, not as up or down. With `[sentinel]
shard = "k/n"` it lists this shard's sites only (those this sentinel probes, `report_sites`) and
says which shard it is: the other shards report theirs from their own stores.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

from sentinel.config import Config
from sentinel.history import db
from sentinel.history.rollup import DAY_MS, uptime_of
from sentinel.store import Store

FORMATS = ("text", "csv", "json")


@dataclass(frozen=True, slots=True)
class SiteReport:
    site: str
    uptime_percent: float | None
    watched_seconds: float
    downtime_seconds: float  # real downtime: not in a maintenance window or a silence
    probes: int
    failures: int
    incidents: int
    longest_incident_seconds: float
    # downtime in a maintenance window or a silence: counted as neither up nor down
    excused_seconds: float = 0.0


def report_sites(config: Config) -> list[str]:
    """The sites a report covers: all, or with `[sentinel] shard` this shard's (as the daemon)."""
    shard = config.shard
    return [s.name for s in config.sites if shard is None or shard.owns(s.name)]


def month_bounds(month: str | None, now: float) -> tuple[str, int, int]:
    """'2026-11' -> ('2026-11', first ms, end ms); None -> the current month."""
    if month is None:
        month = datetime.fromtimestamp(now, UTC).strftime("%Y-%m")
    if not re.fullmatch(r"\d{4}-\d{2}", month) or not 1 <= int(month[5:]) <= 12:
        raise ValueError(f"invalid month {month!r} (use YYYY-MM, e.g. 2026-11)")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return month, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def build_report(
    store: Store, names: list[str], month: str | None, now: float
) -> tuple[str, list[SiteReport]]:
    label, start_ms, end_ms = month_bounds(month, now)
    rows = db.read_rollups(
        store, db.DAY, start_ms // DAY_MS, until_period=end_ms // DAY_MS, latency=False
    )
    incidents = [
        i
        for i in db.read_incidents(store, limit=100_000, since_ms=start_ms)
        if i.started_ms < end_ms
    ]
    now_ms = int(now * 1000)
    out = []
    for name in names:
        days = rows.get(name, {}).values()
        covered = sum(r.covered_ms for r in days)
        down = sum(r.down_ms for r in days)
        excused = sum(r.excused_ms for r in days)
        uptime = uptime_of(covered, down, excused)
        mine = [i for i in incidents if i.site == name]
        out.append(
            SiteReport(
                site=name,
                uptime_percent=None if uptime is None else math.floor(1_000_000 * uptime) / 10_000,
                watched_seconds=covered / 1000,
                downtime_seconds=(down - excused) / 1000,
                probes=sum(r.probes for r in days),
                failures=sum(r.failures for r in days),
                incidents=len(mine),
                longest_incident_seconds=max(
                    (i.duration_ms(now_ms) / 1000 for i in mine), default=0.0
                ),
                excused_seconds=excused / 1000,
            )
        )
    return label, out


def write_report(
    label: str, reports: list[SiteReport], fmt: str, out: TextIO, *, shard: str | None = None
) -> None:
    """`shard`: "k/n" when the report covers one shard's sites (json: a "shard" field, text: the
    title says so; csv rows stay as they were)."""
    if fmt == "json":
        body: dict[str, object] = {"month": label}
        if shard is not None:
            body["shard"] = shard
        body["sites"] = [asdict(r) for r in reports]
        json.dump(body, out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["month", *SiteReport.__dataclass_fields__])
        for r in reports:
            writer.writerow([label, *asdict(r).values()])
        out.write(buf.getvalue())
        return
    header = ("site", "uptime", "downtime", "watched", "incidents", "longest")
    lines = [header]
    for r in reports:
        lines.append(
            (
                r.site,
                # rounded down: a month with downtime never shows as 100 %
                "no data"
                if r.uptime_percent is None
                else f"{math.floor(r.uptime_percent * 1000) / 1000:.3f}%",
                f"{r.downtime_seconds / 60:.1f} min",
                f"{r.watched_seconds / 86400:.1f} d",
                str(r.incidents),
                f"{r.longest_incident_seconds / 60:.1f} min",
            )
        )
    widths = [max(len(x[i]) for x in lines) for i in range(len(header))]
    title = f"uptime report for {label} (UTC)"
    out.write(title + (f", shard {shard}\n" if shard is not None else "\n"))
    for line in lines:
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip() + "\n")
