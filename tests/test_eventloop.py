"""Which event loop `sentinel run` uses: uvloop when installed, the standard one on request."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from sentinel.eventloop import EventLoopError, loop_factory, run, running_loop_name

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _name() -> str:
    return running_loop_name()


def test_asyncio_can_be_forced() -> None:
    assert loop_factory({"SENTINEL_EVENT_LOOP": "asyncio"}) == ("asyncio", None)
    assert run(_name(), {"SENTINEL_EVENT_LOOP": "asyncio"}) == "asyncio"


@pytest.mark.parametrize("value", ["", "auto", " AUTO "])
def test_auto_prefers_uvloop_when_installed(value: str) -> None:
    expected = "uvloop" if HAVE_UVLOOP else "asyncio"
    assert loop_factory({"SENTINEL_EVENT_LOOP": value})[0] == expected
    assert run(_name(), {"SENTINEL_EVENT_LOOP": value}) == expected


def test_unknown_loop_is_an_error_that_names_the_choices() -> None:
    with pytest.raises(EventLoopError, match="expected one of auto, asyncio, uvloop"):
        loop_factory({"SENTINEL_EVENT_LOOP": "trio"})


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_uvloop_on_request() -> None:
    assert run(_name(), {"SENTINEL_EVENT_LOOP": "uvloop"}) == "uvloop"


def test_run_leaves_no_loop_behind() -> None:
    run(asyncio.sleep(0), {"SENTINEL_EVENT_LOOP": "asyncio"})
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
