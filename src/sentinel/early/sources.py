"""Thin readers of the world for the early warnings: cgroup v2 files, /proc, statvfs.

Each returns a `Read`: a value, or None and a one-line reason. None of them raises into the caller
(a watched service that is stopped, a pid file that is missing, a process that exited are normal).
The /proc root and the cgroup root are parameters so tests can use a tree they write, or the real
/proc for real child processes.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, ParamSpec, TypeVar

from sentinel.early.events import MemoryEvents

T = TypeVar("T")
P = ParamSpec("P")

# systemd sets the unit's InvocationID as an xattr of its cgroup directory.
INVOCATION_XATTRS = ("trusted.invocation_id", "user.invocation_id")
_MAX_FILE = 1 << 20  # no file read here is ever bigger than this


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """A value, or None and why not."""

    value: T | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """One sample of a watched service's memory."""

    bytes: int  # the level the detector follows: anon memory (cgroup) or RssAnon/VmRSS (process)
    identity: str | None  # InvocationID or PID (+ start time): a change is a restart
    limit: int | None = None  # memory.high / memory.max when set
    limit_source: str = ""  # "memory.high" | "memory.max" | ""
    current: int | None = None  # memory.current (includes page cache) for a unit
    events: MemoryEvents | None = None  # memory.events for a unit
    pid: int | None = None  # the process read, for a pid_file / process / self watch


@dataclass(frozen=True, slots=True)
class DiskUsage:
    used: int  # bytes not available to unprivileged users (size - available)
    size: int
    available: int


@dataclass(frozen=True, slots=True)
class CpuTimes:
    steal: int  # clock ticks
    total: int


def _safe(fn: Callable[P, Read[T]]) -> Callable[P, Read[T]]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Read[T]:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            return Read(None, f"cannot read{where}: {exc.strerror or exc}")
        except (ValueError, IndexError, UnicodeError) as exc:
            return Read(None, f"unexpected content: {exc}")

    return wrapper


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(_MAX_FILE).decode("utf-8", "replace")


def _read_int(path: str) -> int:
    return int(_read_text(path).split()[0])


def _read_limit(path: str) -> int | None:
    """memory.high / memory.max: a number of bytes, or "max" for none. Missing file: None."""
    try:
        text = _read_text(path).strip()
    except OSError:
        return None
    if text == "max" or not text:
        return None
    return int(text)


def _keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, memory.events) -> dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def cgroup_limit(cgroup_dir: str) -> tuple[int | None, str]:
    """The tighter of memory.high and memory.max, and which one it is."""
    high = _read_limit(os.path.join(cgroup_dir, "memory.high"))
    hard = _read_limit(os.path.join(cgroup_dir, "memory.max"))
    if high is not None and (hard is None or high <= hard):
        return high, "memory.high"
    if hard is not None:
        return hard, "memory.max"
    return None, ""


def _invocation_id(cgroup_dir: str) -> str | None:
    for name in INVOCATION_XATTRS:
        try:
            raw = os.getxattr(cgroup_dir, name)
        except OSError:
            continue
        text = raw.decode("ascii", "replace").strip()
        if text:
            return f"invocation:{text}"
    return None


def _lowest_pid(cgroup_dir: str) -> str | None:
    try:
        pids = [int(p) for p in _read_text(os.path.join(cgroup_dir, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return None
    return f"pid:{min(pids)}" if pids else None


@_safe
def read_unit(cgroup_dir: str) -> Read[MemoryReading]:
    """A systemd unit's memory from its cgroup v2 directory: anon memory from memory.stat (what
    leaks; page cache is reclaimable), memory.current, memory.high/max, memory.events. The identity
    is systemd's InvocationID (the cgroup's xattr), else the lowest PID in cgroup.procs."""
    try:
        current = _read_int(os.path.join(cgroup_dir, "memory.current"))
    except FileNotFoundError:
        if not os.path.isdir(cgroup_dir):
            return Read(None, f"no cgroup {cgroup_dir} (is the unit running?)")
        return Read(None, f"no memory.current in {cgroup_dir} (memory controller not enabled?)")
    try:
        anon: int | None = _keyed(_read_text(os.path.join(cgroup_dir, "memory.stat"))).get("anon")
    except OSError:
        anon = None
    try:
        counters = _keyed(_read_text(os.path.join(cgroup_dir, "memory.events")))
        events: MemoryEvents | None = MemoryEvents(
            oom_kill=counters.get("oom_kill", 0),
            high=counters.get("high", 0),
            max=counters.get("max", 0),
            oom=counters.get("oom", 0),
        )
    except OSError:
        events = None
    limit, source = cgroup_limit(cgroup_dir)
    identity = _invocation_id(cgroup_dir) or _lowest_pid(cgroup_dir)
    return Read(
        MemoryReading(
            bytes=anon if anon is not None else current,
            identity=identity,
            limit=limit,
            limit_source=source,
            current=current,
            events=events,
        )
    )


def _start_time(proc_root: str, pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); the comm may contain spaces and
    parentheses, so the fields are counted after the last ')'."""
    text = _read_text(f"{proc_root}/{pid}/stat")
    return int(text[text.rindex(")") + 2 :].split()[19])


@_safe
def read_pid(proc_root: str, pid: int) -> Read[MemoryReading]:
    """A process's RssAnon (else VmRSS) from /proc/<pid>/status; identity = pid + start time, so
    a reused PID is still a restart."""
    try:
        status = _read_text(f"{proc_root}/{pid}/status")
        start = _start_time(proc_root, pid)
    except FileNotFoundError:
        return Read(None, f"no process {pid}")
    fields: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "VmRSS"):
            fields[key] = int(rest.split()[0]) * 1024  # kB
    value = fields.get("RssAnon", fields.get("VmRSS"))
    if value is None:
        return Read(None, f"process {pid} has no memory (exited or a kernel thread)")
    return Read(MemoryReading(bytes=value, identity=f"pid:{pid}:{start}", pid=pid))


@_safe
def read_pid_file(path: str, proc_root: str = "/proc") -> Read[MemoryReading]:
    try:
        text = _read_text(path).strip()
    except FileNotFoundError:
        return Read(None, f"no pid file {path}")
    if not text or not text.split()[0].isdigit():
        return Read(None, f"pid file {path} does not hold a PID")
    return read_pid(proc_root, int(text.split()[0]))


def _pids(proc_root: str) -> Iterable[int]:
    with os.scandir(proc_root) as entries:
        for entry in entries:
            if entry.name.isdigit():
                yield int(entry.name)


@_safe
def find_process(
    proc_root: str, pattern: re.Pattern[str], exclude: Iterable[int] = ()
) -> Read[int]:
    """The oldest process (earliest start time) whose command line matches `pattern`; the
    arguments are joined with spaces. PIDs in `exclude` (sentinel itself) never match."""
    skip = set(exclude)
    best: tuple[int, int] | None = None
    for pid in _pids(proc_root):
        if pid in skip:
            continue
        try:
            with open(f"{proc_root}/{pid}/cmdline", "rb") as f:
                raw = f.read(64 * 1024)
            if not raw:
                continue  # kernel thread or zombie
            cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            if not pattern.search(cmdline):
                continue
            start = _start_time(proc_root, pid)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if best is None or (start, pid) < best:
            best = (start, pid)
    if best is None:
        return Read(None, f"no process matches /{pattern.pattern}/")
    return Read(best[1])


def read_process(
    proc_root: str, pattern: re.Pattern[str], exclude: Iterable[int] = ()
) -> Read[MemoryReading]:
    found = find_process(proc_root, pattern, exclude)
    if found.value is None:
        return Read(None, found.error)
    return read_pid(proc_root, found.value)


@_safe
def own_cgroup_limit(
    proc_root: str, pid: int, cgroup_root: str = "/sys/fs/cgroup"
) -> Read[tuple[int, str]]:
    """The memory.high/max of the cgroup v2 a process runs in (sentinel's own, under systemd)."""
    for line in _read_text(f"{proc_root}/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            path = line[3:].strip().lstrip("/")
            if ".." in path.split("/"):
                break
            limit, source = cgroup_limit(os.path.join(cgroup_root, path))
            if limit is not None:
                return Read((limit, source))
            break
    return Read(None, "no cgroup v2 memory limit")


@_safe
def mem_total(proc_root: str = "/proc") -> Read[int]:
    for line in _read_text(f"{proc_root}/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return Read(int(line.split()[1]) * 1024)
    return Read(None, f"no MemTotal in {proc_root}/meminfo")


@_safe
def disk_usage(mount: str) -> Read[DiskUsage]:
    st = os.statvfs(mount)
    size = st.f_blocks * st.f_frsize
    available = st.f_bavail * st.f_frsize
    if size <= 0:
        return Read(None, f"{mount} reports no size")
    return Read(DiskUsage(used=max(0, size - available), size=size, available=available))


@_safe
def cpu_times(proc_root: str = "/proc") -> Read[CpuTimes]:
    """The aggregate `cpu` line of /proc/stat. guest and guest_nice are already counted in user
    and nice, so they are left out of the total."""
    for line in _read_text(f"{proc_root}/stat").splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            steal = values[7] if len(values) > 7 else 0
            return Read(CpuTimes(steal=steal, total=sum(values[:8])))
    return Read(None, f"no cpu line in {proc_root}/stat")


def steal_ratio(previous: CpuTimes, current: CpuTimes) -> float | None:
    """Steal share of the CPU time between two samples; None when no time passed (or a counter
    went backwards)."""
    total = current.total - previous.total
    steal = current.steal - previous.steal
    if total <= 0 or steal < 0:
        return None
    return min(1.0, steal / total)
