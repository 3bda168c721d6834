"""Keeps the history benchmarks working: tiny runs, only the result's shape is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, *args, "--json"], capture_output=True, text=True, timeout=300, check=True
    )
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_history_size_reports_bytes_per_site() -> None:
    data = run(str(BENCH / "history_size.py"), "--sites", "2", "--days", "3")
    assert {"history_bytes_per_site", "goal_met", "rows", "table_bytes"} <= data.keys()
    assert data["rows"]["history_day"] == 6  # type: ignore[index]


def test_status_page_reports_render_times() -> None:
    data = run(str(BENCH / "status_page.py"), "--sites", "3", "--runs", "1")
    assert {"cold", "steady", "hour", "max_rss_mib"} <= data.keys()
    assert {"warmup", "first", "hour_warm", "api_first", "api_first_unsliced"} <= data.keys()
    assert data["cold"]["bytes"] > 0  # type: ignore[index]
    assert data["api_first"]["bytes"] > 0  # type: ignore[index]


def test_page_memory_reports_where_the_memory_goes() -> None:
    data = run(str(BENCH / "page_memory.py"), "--sites", "3", "--polls", "2", "--top", "3")
    assert {"tracemalloc_held_kib", "per_site_bytes", "owners_kib", "top_lines"} <= data.keys()
    assert data["per_site_bytes"] > 0  # type: ignore[operator]
