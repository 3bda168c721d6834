"""`sentinel report`: a month's uptime per site from a store with a known history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.history import db
from sentinel.history.rollup import HOUR_MS, Rollup
from sentinel.store import Store

NOV = 1_793_491_200_000  # 2026-11-01 00:00 UTC, ms


def write_known_month(state_dir: Path) -> None:
    with Store.open(state_dir) as store:
        deltas = {}
        for h in range(30 * 24):  # all of November watched, 90 minutes down in total
            down = 1_800_000 if h in (5, 6, 400) else 0
            deltas[("blog", NOV // HOUR_MS + h)] = Rollup(
                probes=60, failures=30 if down else 0, covered_ms=HOUR_MS, down_ms=down
            )
        deltas[("blog", NOV // HOUR_MS - 5)] = Rollup(
            probes=60, covered_ms=HOUR_MS, down_ms=HOUR_MS
        )
        db.write_hours(store, deltas)
        db.incident_opened(store, "blog", NOV + 5 * HOUR_MS, "timeout", "x")
        db.incident_updated(store, "blog", NOV + 5 * HOUR_MS, ended_ms=NOV + 7 * HOUR_MS)


def test_report_of_a_known_month_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_known_month(tmp_path / "state")
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        f'[sentinel]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[sites]]\nname = "blog"\nurl = "http://127.0.0.1:9/"\n'
        '[[sites]]\nname = "new"\nurl = "http://127.0.0.1:9/"\n'
    )
    assert main(["report", "-c", str(cfg), "--month", "2026-11", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    blog, new = data["sites"]
    assert data["month"] == "2026-11"
    assert blog["downtime_seconds"] == 5400.0 and blog["watched_seconds"] == 30 * 86400.0
    assert blog["uptime_percent"] == 99.7916  # 1 - 5400 / 2592000, rounded down
    assert blog["incidents"] == 1 and blog["longest_incident_seconds"] == 7200.0
    assert new["uptime_percent"] is None and new["watched_seconds"] == 0
    assert main(["report", "-c", str(cfg), "--month", "2026-11", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["site"] == "blog" and rows[0]["downtime_seconds"] == "5400.0"
    assert main(["report", "-c", str(cfg), "--month", "2026-11"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("uptime report for 2026-11 (UTC)")
    assert "99.791%" in text and "no data" in text
    assert main(["report", "-c", str(cfg), "--month", "2026-13"]) == 2
    assert "--month: invalid month '2026-13'" in capsys.readouterr().err
