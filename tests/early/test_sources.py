"""The readers against real things: a cgroup v2 tree written by the test, real child processes in
the real /proc, a fake /proc for the host files, and the real filesystem."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.early.events import MemoryEvents
from sentinel.early.sources import (
    CpuTimes,
    cpu_times,
    disk_usage,
    find_process,
    mem_total,
    own_cgroup_limit,
    read_pid,
    read_pid_file,
    read_process,
    read_unit,
    steal_ratio,
)

from .children import HOLD, MIB, Children, children


@pytest.fixture
def kids() -> Iterator[Children]:
    with children() as k:
        yield k


def write_unit(
    root: Path,
    unit: str = "web.service",
    *,
    current: int = 300 * MIB,
    anon: int | None = 200 * MIB,
    high: str = "max",
    limit: str = "max",
    events: str = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    procs: str | None = "4242\n4250\n",
) -> Path:
    """The files systemd's cgroup v2 directory of a unit has, with the values given."""
    path = root / "system.slice" / unit
    path.mkdir(parents=True, exist_ok=True)
    (path / "memory.current").write_text(f"{current}\n")
    stat = f"anon {anon}\nfile 104857600\nkernel 1048576\n" if anon is not None else "file 1\n"
    (path / "memory.stat").write_text(stat)
    (path / "memory.high").write_text(f"{high}\n")
    (path / "memory.max").write_text(f"{limit}\n")
    (path / "memory.events").write_text(events)
    if procs is not None:
        (path / "cgroup.procs").write_text(procs)
    return path


# ---------------------------------------------------------------- cgroup v2


def test_a_unit_is_read_from_its_cgroup_with_anon_memory_as_the_level(tmp_path: Path) -> None:
    path = write_unit(tmp_path)
    reading = read_unit(str(path)).value
    assert reading is not None
    assert reading.bytes == 200 * MIB  # anon: page cache is reclaimable, not a leak
    assert reading.current == 300 * MIB
    assert reading.limit is None and reading.limit_source == ""  # "max" = unlimited
    assert reading.events == MemoryEvents()
    assert reading.identity == "pid:4242"


def test_memory_max_and_the_tighter_memory_high_are_the_limit(tmp_path: Path) -> None:
    path = write_unit(tmp_path, limit=str(1024 * MIB))
    reading = read_unit(str(path)).value
    assert reading is not None
    assert (reading.limit, reading.limit_source) == (1024 * MIB, "memory.max")
    write_unit(tmp_path, high=str(768 * MIB), limit=str(1024 * MIB))
    reading = read_unit(str(path)).value
    assert reading is not None
    assert (reading.limit, reading.limit_source) == (768 * MIB, "memory.high")


def test_memory_events_counters_are_read(tmp_path: Path) -> None:
    path = write_unit(tmp_path, events="low 0\nhigh 12\nmax 3\noom 2\noom_kill 1\n")
    reading = read_unit(str(path)).value
    assert reading is not None
    assert reading.events == MemoryEvents(oom_kill=1, high=12, max=3, oom=2)


def test_without_memory_stat_the_level_is_memory_current(tmp_path: Path) -> None:
    path = write_unit(tmp_path, anon=None)
    reading = read_unit(str(path)).value
    assert reading is not None and reading.bytes == 300 * MIB


def test_the_invocation_id_xattr_is_the_identity_when_present(tmp_path: Path) -> None:
    path = write_unit(tmp_path)
    try:
        os.setxattr(path, "user.invocation_id", b"6d6e2a1f0c7a4c2f9b1d3e5f7a9b1c3d")
    except OSError as exc:  # a filesystem without user xattrs
        pytest.skip(f"user xattrs not supported here: {exc}")
    reading = read_unit(str(path)).value
    assert reading is not None
    assert reading.identity == "invocation:6d6e2a1f0c7a4c2f9b1d3e5f7a9b1c3d"


def test_a_stopped_unit_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    missing = read_unit(str(tmp_path / "system.slice" / "gone.service"))
    assert missing.value is None
    assert "is the unit running?" in missing.error
    empty = tmp_path / "system.slice" / "empty.service"
    empty.mkdir(parents=True)
    assert "memory controller" in read_unit(str(empty)).error
    garbage = write_unit(tmp_path, unit="bad.service")
    (garbage / "memory.current").write_text("lots\n")
    assert read_unit(str(garbage)).error.startswith("unexpected content")


def test_sentinels_own_cgroup_limit_is_found_through_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "cgroup").write_text("0::/system.slice/sentinel.service\n")
    cgroups = tmp_path / "cg"
    write_unit(cgroups, unit="sentinel.service", limit=str(256 * MIB))
    assert own_cgroup_limit(str(proc), 77, str(cgroups)).value == (256 * MIB, "memory.max")
    assert own_cgroup_limit(str(proc), 78, str(cgroups)).value is None


# ---------------------------------------------------------------- real processes


def test_a_real_process_is_read_by_pid_with_its_anonymous_memory(kids: Children) -> None:
    proc, _ = kids.start(HOLD, 64 * MIB)
    reading = read_pid("/proc", proc.pid).value
    assert reading is not None
    assert 64 * MIB <= reading.bytes < 64 * MIB + 64 * MIB
    assert reading.pid == proc.pid
    assert reading.identity is not None and reading.identity.startswith(f"pid:{proc.pid}:")


def test_a_real_process_is_read_through_its_pid_file(kids: Children, tmp_path: Path) -> None:
    proc, _ = kids.start(HOLD, 32 * MIB)
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{proc.pid}\n")
    reading = read_pid_file(str(pid_file)).value
    assert reading is not None and reading.pid == proc.pid and reading.bytes >= 32 * MIB


def test_the_oldest_process_matching_the_regex_is_the_one_read(kids: Children) -> None:
    tag = f"shared-tag-{uuid.uuid4().hex}"
    first, _ = kids.start(HOLD, 16 * MIB, tag)
    second, _ = kids.start(HOLD, 48 * MIB, tag)  # younger, same command line pattern
    pattern = re.compile(re.escape(tag))
    reading = read_process("/proc", pattern).value
    assert reading is not None and reading.pid == first.pid
    assert find_process("/proc", pattern, exclude=[first.pid]).value == second.pid
    assert find_process("/proc", pattern, exclude=[first.pid, second.pid]).value is None


def test_a_process_that_is_gone_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    assert read_pid("/proc", 2**22 + 1).error.startswith("no process")
    assert "no pid file" in read_pid_file(str(tmp_path / "none.pid")).error
    (tmp_path / "bad.pid").write_text("not a pid\n")
    assert "does not hold a PID" in read_pid_file(str(tmp_path / "bad.pid")).error
    nothing = re.compile("no-such-process-anywhere-[0-9]{40}")
    assert read_process("/proc", nothing).error.startswith("no process matches")


def test_a_kernel_thread_has_no_memory_to_read(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "status").write_text("Name:\tkthreadd\nState:\tS (sleeping)\n")
    fields = " ".join(["S", *["0"] * 18, "12345", *["0"] * 20])
    (tmp_path / "5" / "stat").write_text(f"5 (kthreadd) {fields}\n")
    reading = read_pid(str(tmp_path), 5)
    assert reading.value is None and "no memory" in reading.error


def test_the_start_time_is_read_after_a_command_name_with_spaces_and_parens(
    tmp_path: Path,
) -> None:
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "status").write_text("Name:\tweird\nVmRSS:\t 2048 kB\n")
    fields = " ".join(["S", *["0"] * 18, "777", *["0"] * 20])
    (tmp_path / "9" / "stat").write_text(f"9 (a) b (c) {fields}\n")
    reading = read_pid(str(tmp_path), 9).value
    assert reading is not None
    assert reading.identity == "pid:9:777"
    assert reading.bytes == 2048 * 1024  # VmRSS when there is no RssAnon


# ---------------------------------------------------------------- host


def test_mem_total_comes_from_meminfo(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    assert mem_total(str(tmp_path)).value == 16384000 * 1024
    real = mem_total("/proc").value
    assert real is not None and real > 0
    assert mem_total(str(tmp_path / "nowhere")).value is None


def test_cpu_steal_is_the_share_of_steal_between_two_samples(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text("cpu  100 0 50 800 10 0 5 35 20 0\ncpu0 1 2 3\n")
    first = cpu_times(str(tmp_path)).value
    assert first == CpuTimes(steal=35, total=1000)
    (tmp_path / "stat").write_text("cpu  150 0 75 900 10 0 5 95 40 0\n")
    second = cpu_times(str(tmp_path)).value
    assert second is not None
    assert steal_ratio(first, second) == pytest.approx(60 / 235)
    assert steal_ratio(second, second) is None
    assert steal_ratio(second, first) is None
    assert cpu_times("/proc").value is not None


def test_disk_usage_matches_the_filesystem(tmp_path: Path) -> None:
    usage = disk_usage(str(tmp_path)).value
    assert usage is not None
    total, _, free = shutil.disk_usage(tmp_path)
    assert usage.size == total
    assert abs(usage.available - free) < 64 * MIB  # others write meanwhile
    assert usage.used == usage.size - usage.available
    assert disk_usage(str(tmp_path / "missing")).value is None
