"""SIGHUP reload of a running daemon: a good file is applied keeping state, a bad one is refused."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from daemon_proc import SentinelProcess, wait_until
from targets import target_server

pytestmark = pytest.mark.slow  # every test here starts the daemon

SITES = """
[defaults]
interval = "1s"
timeout = "500ms"
failure_threshold = 2

{sites}
"""


def site(name: str, url: str, extra: str = "") -> str:
    return f'[[sites]]\nname = "{name}"\nurl = "{url}"\n{extra}\n'


def test_good_reload_applies_the_difference_and_keeps_state(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server() as target:
        proc = sentinel_proc(
            SITES.format(
                sites=site("failing", target.url("/fail")) + site("gone", target.url("/ok"))
            )
        ).start()
        wait_until(lambda: proc.status()["failing"]["status"] == "down", timeout=10)
        down_since = proc.status()["failing"]["since"]
        wait_until(lambda: proc.metric("sentinel_site_up", site="gone") == 1, timeout=10)

        proc.write_config(
            SITES.format(
                sites=site("failing", target.url("/fail"), 'interval = "2s"')
                + site("new", target.url("/ok"))
            )
        )
        proc.signal(signal.SIGHUP)
        wait_until(lambda: proc.metric("sentinel_site_up", site="new") == 1, timeout=10)
        text = proc.metrics_text()
        assert 'site="gone"' not in text
        assert "gone" not in proc.status()
        # The changed site kept its incident: same since, still down, no new incident.
        assert proc.status()["failing"]["status"] == "down"
        assert proc.status()["failing"]["since"] == down_since
        assert proc.metric("sentinel_config_last_reload_successful") == 1
        assert proc.metric("sentinel_sites") == 2
        assert proc.stop() == 0


def test_bad_reload_keeps_the_old_config_probing(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server() as target:
        proc = sentinel_proc(SITES.format(sites=site("ok", target.url("/ok")))).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="ok") == 1, timeout=10)
        good_reload_time = proc.metric("sentinel_config_last_reload_success_timestamp_seconds")
        proc.write_config(SITES.format(sites=site("ok", target.url("/ok"), 'interval = "soon"')))
        proc.signal(signal.SIGHUP)
        wait_until(lambda: proc.metric("sentinel_config_last_reload_successful") == 0, timeout=10)
        before = proc.metric("sentinel_probes_total", site="ok", result="success") or 0
        wait_until(
            lambda: (
                (proc.metric("sentinel_probes_total", site="ok", result="success") or 0)
                >= before + 2
            ),
            timeout=10,
        )
        assert proc.metric("sentinel_config_last_reload_success_timestamp_seconds") == (
            good_reload_time
        )
        assert "interval: invalid duration 'soon'" in proc.log()
        assert "keeping the running config" in proc.log()
        assert proc.stop() == 0


def _mapped(pid: int, name: str) -> bool:
    """Whether the process has a shared object whose path contains `name` mapped."""
    with open(f"/proc/{pid}/maps") as maps:
        return any(name in line for line in maps)


def test_the_daemon_validates_its_file_in_a_child_and_never_loads_pydantic(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    # pydantic's ~20 MiB would stay resident once imported (sentinel.config_child). A deprecated
    # key's warning, given by the child at start and at every reload, is logged once.
    deprecated = 'status_url = "https://status.example.org/"\n'  # in the [sentinel] written first
    with target_server() as target:
        proc = sentinel_proc(deprecated + SITES.format(sites=site("a", target.url("/ok")))).start()
        assert proc.proc is not None
        wait_until(lambda: proc.metric("sentinel_site_up", site="a") == 1, timeout=10)
        proc.write_config(
            deprecated
            + SITES.format(sites=site("a", target.url("/ok")) + site("b", target.url("/ok")))
        )
        proc.signal(signal.SIGHUP)
        wait_until(lambda: proc.metric("sentinel_site_up", site="b") == 1, timeout=10)
        proc.write_config(deprecated + SITES.format(sites=site("b", target.url("/ok"))))
        proc.signal(signal.SIGHUP)
        wait_until(lambda: proc.metric("sentinel_sites") == 1, timeout=10)
        assert not _mapped(proc.proc.pid, "pydantic_core")
        assert proc.log().count("[sentinel] status_url is deprecated") == 1
        assert "validating it in the daemon instead" not in proc.log()
        assert proc.stop() == 0
