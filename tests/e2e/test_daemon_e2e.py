"""End to end: the real `sentinel run` against real loopback targets, read through a real scrape."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, free_port, wait_until
from targets import target_server

pytestmark = pytest.mark.slow  # every test here starts the daemon

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None

FOUR_SITES = """
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2

[[sites]]
name = "up-site"
url = "{ok}"
body_contains = "status 200"

[[sites]]
name = "http-500"
url = "{fail}"

[[sites]]
name = "refused"
url = "http://127.0.0.1:{closed}/"

[[sites]]
name = "tcp-check"
tcp = "127.0.0.1:{port}"
"""


@pytest.mark.parametrize("event_loop", ["auto", "asyncio"])
def test_metrics_are_correct_for_up_500_refused_and_tcp_sites(
    sentinel_proc: Callable[..., SentinelProcess], event_loop: str
) -> None:
    with target_server() as target:
        config = FOUR_SITES.format(
            ok=target.url("/ok"), fail=target.url("/fail"), closed=free_port(), port=target.port
        )
        proc = sentinel_proc(config, env={"SENTINEL_EVENT_LOOP": event_loop}).start()
        wanted_loop = "asyncio" if event_loop == "asyncio" or not HAVE_UVLOOP else "uvloop"
        wait_until(lambda: f"loop={wanted_loop}" in proc.log(), timeout=5)

        def all_decided() -> bool:
            m = proc.metrics()
            return (
                all(
                    m.get(("sentinel_site_up", (("site", s),))) is not None
                    for s in ("up-site", "http-500", "refused", "tcp-check")
                )
                and m.get(("sentinel_site_up", (("site", "refused"),))) == 0
            )

        wait_until(all_decided, timeout=15)
        m = proc.metric
        assert m("sentinel_probe_success", site="up-site") == 1, proc.status()["up-site"]
        assert m("sentinel_site_up", site="up-site") == 1
        assert m("sentinel_http_status_code", site="up-site") == 200
        assert m("sentinel_probe_success", site="http-500") == 0
        assert m("sentinel_http_status_code", site="http-500") == 500
        assert m("sentinel_site_up", site="http-500") == 0
        assert m("sentinel_probe_success", site="refused") == 0
        assert m("sentinel_http_status_code", site="refused") == 0
        assert m("sentinel_probe_failures_total", site="refused", reason="connect_refused") >= 2  # type: ignore[operator]
        assert m("sentinel_probe_success", site="tcp-check") == 1
        assert m("sentinel_site_up", site="tcp-check") == 1
        assert m("sentinel_probes_total", site="up-site", result="success") >= 1  # type: ignore[operator]
        assert m("sentinel_downtime_seconds_total", site="http-500") > 0  # type: ignore[operator]
        assert m("sentinel_config_last_reload_successful") == 1
        assert m("sentinel_schedule_lag_seconds_count") >= 1  # type: ignore[operator]
        assert m("sentinel_probe_phase_seconds", site="up-site", phase="connect") is not None

        status = proc.status()
        assert status["http-500"]["status"] == "down"
        assert status["up-site"]["status"] == "up"
        assert status["refused"]["last"]["reason"] == "connect_refused"
        assert b"sentinel" in proc.get("/")

        # Promptly (nothing here is slow to end), well before stop()'s own 30 s bound; loose
        # enough for a loaded machine, where the bare exit of a Python process can take seconds.
        started = time.monotonic()
        assert proc.stop(timeout=30) == 0
        assert time.monotonic() - started < 10


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
def test_promtool_accepts_the_real_metrics_output(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server() as target:
        config = FOUR_SITES.format(
            ok=target.url("/ok"), fail=target.url("/fail"), closed=free_port(), port=target.port
        )
        proc = sentinel_proc(config).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="refused") == 0, timeout=15)
        text = proc.metrics_text()
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        # promtool exits 1 for lint warnings too; any output line is a finding.
        assert check.returncode == 0, check.stdout + check.stderr
        assert proc.stop() == 0


def test_sigint_stops_cleanly(sentinel_proc: Callable[..., SentinelProcess]) -> None:
    proc = sentinel_proc(
        '[[sites]]\nname = "x"\ntcp = "127.0.0.1:9"\ninterval = "1s"\ntimeout = "200ms"\n'
    ).start()
    proc.signal(signal.SIGINT)
    assert proc.proc is not None
    assert proc.proc.wait(timeout=30) == 0  # a bound against a hang, not a speed test


def test_invalid_config_exits_78_without_traceback(tmp_path: object) -> None:
    import sys
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text('[[sites]]\nname = "blog"\nurl = "http://x/"\ninterval = "soon"\n')
    run = subprocess.run(
        [sys.executable, "-m", "sentinel", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 78
    assert "sites[0] \"blog\": interval: invalid duration 'soon'" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_second_daemon_on_the_same_state_dir_is_refused(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    import sys

    proc = sentinel_proc(
        '[[sites]]\nname = "x"\ntcp = "127.0.0.1:9"\ninterval = "1s"\ntimeout = "200ms"\n'
    ).start()
    second = subprocess.run(
        [sys.executable, "-m", "sentinel", "run", "-c", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 78
    assert "another sentinel is already running" in second.stderr
    assert "Traceback" not in second.stderr
    assert proc.healthy()
    assert proc.stop() == 0


def test_an_unknown_event_loop_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(
        f'[sentinel]\nlisten = ""\nstate_dir = "{tmp_path / "state"}"\n'
        '[[sites]]\nname = "a"\nurl = "http://127.0.0.1:9/"\n'
    )
    env = {**os.environ, "SENTINEL_EVENT_LOOP": "tokio"}
    done = subprocess.run(
        [sys.executable, "-m", "sentinel", "run", "-c", str(config)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "SENTINEL_EVENT_LOOP='tokio': expected one of auto, asyncio, uvloop" in done.stderr
