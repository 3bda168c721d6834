"""Shared fixtures: a running sentinel subprocess that is always stopped; the probe tests run on
both event loops the daemon may use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess


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
BOTH_LOOPS_MODULES = ("test_probe_lean.py", "test_hostile_targets.py", "test_probe_connect.py")


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
