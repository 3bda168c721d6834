"""Shared fixtures: a running sentinel subprocess that is always stopped; the probe tests run on
both event loops the daemon may use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import settings

import daemon_proc
from daemon_proc import SentinelProcess

# Property tests draw the same examples on every run (a hash of each test picks its seed), so a
# run of the suite, as CI's, is reproducible: it never turns red on a new random draw. Looking
# for new counterexamples is a run of its own: `pytest --hypothesis-profile=explore` (new random
# draws each run); what it finds is pinned with @example.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """SentinelProcess.start() refuses to run in a test not marked slow (also from a module
    fixture, set up with its first test), so the quick loop `pytest -m "not slow"` stays quick."""
    daemon_proc.SLOW_TEST_RUNNING = item.get_closest_marker("slow") is not None


@pytest.fixture
def sentinel_proc(tmp_path: Path) -> Iterator[Callable[..., SentinelProcess]]:
    started: list[SentinelProcess] = []

    def make(config_text: str, **kwargs: object) -> SentinelProcess:
        proc = SentinelProcess(tmp_path, config_text, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


# The daemon runs on uvloop when it is installed (sentinel.eventloop), and its transports differ
# from asyncio's (no ReadTransport base class, other read sizes): the probe tests run on both.
BOTH_LOOPS_MODULES = (
    "test_probe_http.py",
    "test_probe_lean.py",
    "test_hostile_targets.py",
    "test_probe_connect.py",
    "test_webauth.py",  # TLS is taken per connection with StreamWriter.start_tls
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The aiohttp prober is not what the daemon runs: test_probe_http.py runs it on asyncio only
    (its lean twin, the `prober` fixture's other param, runs on both loops)."""
    unwanted = [
        item
        for item in items
        if item.path.name == "test_probe_http.py"
        and "aiohttp" in (callspec_id := getattr(getattr(item, "callspec", None), "id", ""))
        and "uvloop" in callspec_id
    ]
    if unwanted:
        config.hook.pytest_deselected(items=unwanted)
        items[:] = [item for item in items if item not in unwanted]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.path.name not in BOTH_LOOPS_MODULES:
        return factories
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
