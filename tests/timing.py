"""Bounds for the few tests that check a deadline was kept.

An event loop's timer may fire a little EARLY as a wall clock measures it: uvloop (libuv) rounds a
delay to whole milliseconds and compares against a loop time truncated to the millisecond, so
`call_later(0.3)` can run 1.5 ms before 0.3 s have passed (`assert 0.3 <= 0.29993` failed in CI).
asyncio's own loop allows for its clock's resolution too. `at_least(elapsed, deadline)` is the
lower bound a test may assert; upper bounds are generous (the machine may be busy), never tight.
"""

from __future__ import annotations

import os
import time

# How early a timer may fire: uvloop's 0.5 ms rounding + 1 ms truncation, with a margin.
TIMER_EARLY = 0.002
# "Ended near its deadline, not hung": far above any scheduling delay of a loaded machine.
GENEROUS = 5.0


def at_least(elapsed: float, deadline: float) -> bool:
    """elapsed did not end before `deadline`, allowing for the loop's timer resolution."""
    return elapsed >= deadline - TIMER_EARLY


def near(elapsed: float, deadline: float) -> bool:
    """Kept the deadline: not (meaningfully) before it, and not hung past it."""
    return at_least(elapsed, deadline) and elapsed < deadline + GENEROUS


def run_delay(pid: int | str = "self") -> float:
    """Seconds the threads of process `pid` have spent runnable but waiting for a CPU, summed.

    On a loaded machine a process is preempted: its timers fire late and its callbacks seem slow
    although its code did nothing wrong. The growth of this figure over an interval is that lost
    time, so a bound on wall time may allow `elapsed <= budget + (run_delay() - before)`: exactly
    as strict as a bare budget on an idle machine, and no flakier on a busy one. Summed over the
    threads, it errs on the side of forgiving (two waiting threads count twice). 0.0 where the
    kernel keeps no scheduler statistics (/proc/<pid>/task/<tid>/schedstat, field 2, in ns).
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile: its wait is lost, which only makes bounds stricter
    return total / 1e9


class Stopwatch:
    """Wall time since it was made, less the time this process waited for a CPU meanwhile
    (`run_delay`): what a "within N seconds" bound means on a machine other jobs may load."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._waited_before = run_delay()

    def elapsed(self) -> float:
        waited = max(0.0, run_delay() - self._waited_before)
        return time.perf_counter() - self._start - waited
