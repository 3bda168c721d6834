"""Shared parts of the benchmark scripts: processes, /proc sampling, scraping, histograms, results.

Everything here talks to loopback only, and every process it starts is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """A benchmark could not run (a process did not start, a port did not answer)."""


class DaemonUnavailableError(BenchError):
    """`sentinel run` did not start (e.g. the daemon is not finished yet)."""


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 30.0) -> bytes:
    if not url.startswith(("http://127.0.0.1", "http://[::1]", "http://localhost")):
        raise BenchError(f"loopback only: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# A bench script stopped with SIGTERM (kill PID) unwinds through its `finally` blocks, which stop
# the fleet, the daemon and the exporters it started; without this they would be left running.
signal.signal(signal.SIGTERM, _exit_on_sigterm)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM this one process (by its PID), wait, SIGKILL it if it does not stop."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return int(proc.returncode)


# ---------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def mem_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon ... of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmSize", "Threads"):
            out[key] = int(value.split()[0])
    return out


def system_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("sentinel", "aiohttp", "prometheus-client", "uvloop", "pydantic"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    mem_total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_total = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mib": mem_total // 1024,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
        "versions": versions,
        "sentinel_commit": commit,
    }


# ---------------------------------------------------------------- Prometheus text


_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """The few sentinel families the benchmarks need, summed over sites (cheap to parse even at
    30,000 sites, where the full text has about a million lines)."""

    probes: dict[str, float] = field(default_factory=dict)  # result -> total
    lag_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    lag_sum: float = 0.0
    lag_count: float = 0.0
    duration_buckets: dict[float, float] = field(default_factory=dict)
    skipped: float = 0.0
    failures_by_reason: dict[str, float] = field(default_factory=dict)
    singles: dict[str, float] = field(default_factory=dict)  # label-less sentinel_/process_ lines
    emails: dict[str, float] = field(default_factory=dict)
    scrape_seconds: float = 0.0
    scrape_bytes: int = 0
    at: float = 0.0  # time.monotonic() when the scrape finished

    @property
    def probes_total(self) -> float:
        return sum(self.probes.values())


def parse_scrape(text: str) -> Scrape:
    s = Scrape()
    for line in text.splitlines():
        if not line.startswith(("sentinel_", "process_")):
            continue
        head, _, value_text = line.rpartition(" ")
        try:
            value = float(value_text)
        except ValueError:
            continue
        name, brace, label_text = head.partition("{")
        labels = dict(_LABEL_RE.findall(label_text)) if brace else {}
        if name == "sentinel_probes_total":
            result = labels.get("result", "")
            s.probes[result] = s.probes.get(result, 0.0) + value
        elif name == "sentinel_schedule_lag_seconds_bucket":
            le = float(labels["le"])
            s.lag_buckets[le] = s.lag_buckets.get(le, 0.0) + value
        elif name == "sentinel_schedule_lag_seconds_sum":
            s.lag_sum += value
        elif name == "sentinel_schedule_lag_seconds_count":
            s.lag_count += value
        elif name == "sentinel_probe_duration_seconds_bucket":
            le = float(labels["le"])
            s.duration_buckets[le] = s.duration_buckets.get(le, 0.0) + value
        elif name == "sentinel_skipped_ticks_total":
            s.skipped += value
        elif name == "sentinel_probe_failures_total":
            reason = labels.get("reason", "")
            s.failures_by_reason[reason] = s.failures_by_reason.get(reason, 0.0) + value
        elif name == "sentinel_emails_sent_total":
            kind = labels.get("kind", "")
            s.emails[kind] = s.emails.get(kind, 0.0) + value
        elif not brace:
            s.singles[name] = value
    return s


def scrape(url: str, timeout: float = 60.0) -> Scrape:
    t0 = time.perf_counter()
    body = http_get(url, timeout=timeout)
    elapsed = time.perf_counter() - t0
    s = parse_scrape(body.decode("utf-8", errors="replace"))
    s.scrape_seconds = elapsed
    s.scrape_bytes = len(body)
    s.at = time.monotonic()
    return s


def bucket_delta(end: dict[float, float], start: dict[float, float]) -> list[tuple[float, float]]:
    return sorted((le, end[le] - start.get(le, 0.0)) for le in end)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets, +Inf included:
    linear interpolation inside the bucket that holds the rank; the lowest bucket starts at 0;
    a rank in the +Inf bucket returns the highest finite bound."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != float("inf"):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == float("inf"):
                return ordered[-2][0] if len(ordered) >= 2 else None
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return ordered[-2][0] if len(ordered) >= 2 else None


# ---------------------------------------------------------------- the fleet


class FleetProc:
    """`bench/fleet.py` as a child process on a free loopback port."""

    def __init__(
        self,
        sites: int,
        *,
        python: str = sys.executable,
        hang: float = 20.0,
        stamp_requests: bool = False,
        prefix: Sequence[str] = (),
    ) -> None:
        self.sites = sites
        self.proc = subprocess.Popen(
            [
                *prefix,
                python,
                str(BENCH_DIR / "fleet.py"),
                "--port",
                "0",
                "--sites",
                str(sites),
                "--hang",
                str(hang),
                *(["--stamp-requests"] if stamp_requests else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            stop_process(self.proc)
            raise BenchError("the fleet did not start")
        self.port = int(json.loads(line)["port"])
        self.final: dict[str, Any] | None = None
        # How the probers name site i: None for the address itself (127.0.0.1), else a host
        # name template such as "t{i}.bench.test" (compare.py --names, served by dnsmasq).
        self.host_template: str | None = None

    def site_host(self, i: int) -> str:
        return "127.0.0.1" if self.host_template is None else self.host_template.format(i=i)

    def site_url(self, i: int) -> str:
        """The URL the probers are given for site i (by address, or by name)."""
        return f"http://{self.site_host(i)}:{self.port}/t/{i}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(http_get(self.url("/stats")))
        return data

    def stop(self) -> dict[str, Any] | None:
        stop_process(self.proc)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            lines = self.proc.stdout.read().strip().splitlines()
            self.proc.stdout.close()
            if lines:
                self.final = json.loads(lines[-1])
        return self.final

    def __enter__(self) -> FleetProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fleet_delta(end: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    kinds = set(end["by_kind"]) | set(start["by_kind"])
    by_kind = {k: end["by_kind"].get(k, 0) - start["by_kind"].get(k, 0) for k in sorted(kinds)}
    return {
        "requests": end["requests"] - start["requests"],
        "success_served": end["success_served"] - start["success_served"],
        "by_kind": by_kind,
        "cpu_s": round(end["cpu_s"] - start["cpu_s"], 4),
    }


# ---------------------------------------------------------------- sentinel


def site_block(name: str, url: str, **extra: str | int) -> str:
    lines = ["[[sites]]", f'name = "{name}"', f'url = "{url}"']
    for key, value in extra.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


def sentinel_config(
    *,
    listen_port: int,
    state_dir: Path,
    interval: float,
    timeout: float,
    sites: Iterable[str],
    max_concurrency: int | None = None,
    email: dict[str, Any] | None = None,
    batch_window: str | None = None,
    precise_latency: bool = False,
) -> str:
    head = [
        "# generated by bench/; every target is on loopback",
        "[sentinel]",
        f'listen = "127.0.0.1:{listen_port}"',
        f'state_dir = "{state_dir}"',
    ]
    if max_concurrency is not None:
        head.append(f"max_concurrency = {max_concurrency}")
    if batch_window is not None:
        head.append(f"batch_window = {json.dumps(batch_window)}")
    if precise_latency:
        head.append("precise_latency = true")
    head += ["", "[defaults]", f'interval = "{_dur(interval)}"', f'timeout = "{_dur(timeout)}"', ""]
    if email:
        head.append("[email]")
        for key, value in email.items():
            head.append(f"{key} = {json.dumps(value)}")
        head.append("")
    return "\n".join(head) + "\n" + "\n".join(sites)


def fleet_sites(
    n: int, fleet_port: int, start: int = 0, *, fleet: FleetProc | None = None
) -> list[str]:
    """The [[sites]] blocks for sites start..start+n of the fleet (by name if `fleet` says so)."""
    return [
        site_block(f"t{i}", fleet.site_url(i) if fleet else f"http://127.0.0.1:{fleet_port}/t/{i}")
        for i in range(start, start + n)
    ]


def _dur(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class SentinelProc:
    """`python -m sentinel run -c FILE` with a generated config in a temp dir."""

    def __init__(
        self,
        workdir: Path,
        config_text: str,
        port: int,
        *,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.config_path = workdir / "sites.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "sentinel.log"
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC")
        }
        environ.update(env or {})
        self._log: IO[bytes] = self.log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "sentinel",
                "--log-level",
                log_level,
                "run",
                "-c",
                str(self.config_path),
            ],
            stdout=self._log,
            stderr=self._log,
            env=environ,
            cwd=str(workdir),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds until /healthz answered 200; DaemonUnavailableError if it exits or hangs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonUnavailableError(
                    f"sentinel exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                if http_get(self.url("/healthz"), timeout=2).startswith(b"ok"):
                    return time.monotonic() - self.started
            time.sleep(0.1)
        self.stop()
        raise DaemonUnavailableError(
            f"sentinel did not become healthy in {timeout}s:\n{self.log_tail()}"
        )

    def scrape(self) -> Scrape:
        return scrape(self.url("/metrics"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int:
        try:
            return stop_process(self.proc, timeout)
        finally:
            self._log.close()


# ---------------------------------------------------------------- results


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_result(kind: str, data: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{utc_stamp()}-{kind}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


class Sampler:
    """RSS / CPU samples of one PID every `every` seconds (driven by the caller's loop)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float, int, int]] = []  # (t, cpu_s, rss_kib, hwm_kib)

    def sample(self) -> tuple[float, float, int, int]:
        mem = mem_kib(self.pid)
        row = (time.monotonic(), cpu_seconds(self.pid), mem.get("VmRSS", 0), mem.get("VmHWM", 0))
        self.samples.append(row)
        return row

    def max_rss_kib(self) -> int:
        return max((s[2] for s in self.samples), default=0)


def sleep_sampling(
    sampler: Sampler | Sequence[Sampler], seconds: float, every: float = 1.0, alive: Any = None
) -> None:
    """Sleep `seconds`, sampling every `every` s; stops early if `alive()` returns False."""
    samplers = [sampler] if isinstance(sampler, Sampler) else list(sampler)
    deadline = time.monotonic() + seconds
    while True:
        for s in samplers:
            with contextlib.suppress(OSError):
                s.sample()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (alive is not None and not alive()):
            return
        time.sleep(min(every, remaining))
