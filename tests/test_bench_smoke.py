"""Keeps the benchmark scripts working: a few-second run of bench/run_sentinel.py on a tiny fleet.

Only the shape of the result is asserted, never a figure (figures come from the benchmark runs,
see bench/README.md). Skips with the reason if `sentinel run` cannot start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

RUN_KEYS = {
    "sites",
    "interval_s",
    "window_s",
    "probes",
    "expected_probes",
    "probes_ratio",
    "cpu_ms_per_probe",
    "cpu_core_fraction",
    "peak_rss_mib",
    "lag_p50_s",
    "lag_p99_s",
    "success_ratio",
    "truth_success_ratio",
    "fleet_requests",
    "skipped_ticks",
    "exit_code",
}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def _fleet(sites: int) -> Iterator[int]:
    """bench/fleet.py on a free loopback port (yielded), stopped by its PID at the end."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "fleet.py"), "--port", "0", "--sites", str(sites)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_fleet_serves_the_documented_mix() -> None:
    with _fleet(100) as port:
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/t/0") == (200, b"ok\n")
        status, body = _get(f"{base}/t/85")
        assert status == 200 and len(body) == 16 * 1024
        assert _get(f"{base}/t/92")[0] == 500
        assert _get(f"{base}/d/1/x") == (200, b"ok\n")
        stats = json.loads(_get(f"{base}/stats")[1])
        assert stats["requests"] == 4
        assert stats["expected_success_ratio"] == pytest.approx(0.94)


@pytest.mark.slow
def test_run_sentinel_produces_a_result() -> None:
    cmd = [
        sys.executable,
        str(BENCH / "run_sentinel.py"),
        "--sites",
        "5",
        "--interval",
        "1",
        "--warmup",
        "1.5",
        "--window",
        "3",
        "--runs",
        "1",
        "--no-save",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode == 3:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        pytest.skip(f"the daemon cannot start: {tail}")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kind"] == "sentinel"
    assert {"nproc", "cpu_model", "versions"} <= result["machine"].keys()
    [run] = result["runs"]
    assert run.keys() >= RUN_KEYS
    assert {"cpu_ms_per_probe", "peak_rss_mib", "lag_p99_s"} <= result["medians"].keys()


@pytest.mark.slow
def test_floor_prober_probes_the_fleet() -> None:
    with _fleet(100) as port:
        cmd = [sys.executable, str(BENCH / "floor_prober.py"), "--port", str(port)]
        cmd += ["--sites", "100", "--interval", "1", "--warmup", "1.5", "--window", "2"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.keys() >= {"probes", "cpu_ms_per_probe", "success_ratio", "peak_rss_mib"}
    assert result["probes"] > 0
