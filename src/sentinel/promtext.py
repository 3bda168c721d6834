"""Prometheus metrics and the text exposition format 0.0.4, without prometheus_client.

What sentinel needs of a client library, and no more: counters and gauges with fixed label names,
a histogram, custom collectors, a registry, the text format, and the `process_*` series. Importing
prometheus_client cost the daemon ~3 MiB of RSS (its package imports http.server, wsgiref,
urllib.request and more); this module imports nothing beyond the standard library's core.

Contract: for the same operations, `Registry.render()` gives byte for byte what
prometheus_client's `generate_latest` gives with `disable_created_metrics()` (no `_created`
series): the same HELP/TYPE lines, label order (sorted by name), escaping and number formatting
(tests/test_promtext.py checks it against prometheus_client). Pure but for `ProcessCollector`,
whose `collect` reads /proc like prometheus_client's does.

Not thread-safe: the daemon updates and renders its metrics on one event loop thread.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

Kind = Literal["counter", "gauge", "histogram"]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def format_value(value: float) -> str:
    """A sample value as prometheus_client's `floatToGoString` writes it (Go's exponent style:
    `+Inf`, `-Inf`, `NaN`, `1.0`, `1e+06`)."""
    d = float(value)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    text = repr(d)
    dot = text.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_label_value(value: str) -> str:
    """A label value between the quotes of the text format: `\\`, newline and `"` escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    """A HELP text: `\\` and newline escaped (quotes are not, in the 0.0.4 format)."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # in the order given; the text sorts them by name
    value: float


@dataclass(slots=True)
class Family:
    """One metric family as a collector yields it. `name` is the exposed name (a counter's ends
    in `_total`, as the HELP and TYPE lines show it)."""

    name: str
    kind: Kind
    help: str
    labelnames: tuple[str, ...] = ()
    samples: list[Sample] = field(default_factory=list)

    def add(self, labelvalues: Sequence[str], value: float) -> None:
        """A sample named after the family (a gauge's or a counter's), like prometheus_client's
        `GaugeMetricFamily.add_metric`."""
        labels = tuple(zip(self.labelnames, labelvalues, strict=True))
        self.samples.append(Sample(self.name, labels, value))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


def _sample_names(family: Family) -> set[str]:
    """The names a family claims in a registry (prometheus_client refuses duplicates of these)."""
    if family.kind == "counter":
        return {family.name, family.name.removesuffix("_total")}
    if family.kind == "histogram":
        return {family.name + s for s in ("", "_bucket", "_count", "_sum")}
    return {family.name}


class Registry:
    """Collectors in registration order; that order is the order of the text."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._names: set[str] = set()

    def register(self, collector: Collector) -> None:
        """Add a collector. Its families are collected once to know their names: a name that
        another collector already exposes is refused (ValueError), as prometheus_client does."""
        names: set[str] = set()
        for family in collector.collect():
            names |= _sample_names(family)
        duplicates = names & self._names
        if duplicates:
            raise ValueError(f"duplicated timeseries in the registry: {sorted(duplicates)}")
        self._names |= names
        self._collectors.append(collector)

    def collect(self) -> Iterator[Family]:
        for collector in list(self._collectors):
            yield from collector.collect()

    def render(self) -> bytes:
        """The text exposition format 0.0.4 of every family (prometheus_client's
        `generate_latest`)."""
        return render(self.collect())

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of one sample, or None (for tests, like prometheus_client's)."""
        wanted = sorted((labels or {}).items())
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and sorted(sample.labels) == wanted:
                    return sample.value
        return None


def render(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {escape_help(family.help)}\n")
        out.append(f"# TYPE {family.name} {family.kind}\n")
        for s in family.samples:
            if s.labels:
                pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(s.labels))
                out.append(f"{s.name}{{{pairs}}} {format_value(s.value)}\n")
            else:
                out.append(f"{s.name} {format_value(s.value)}\n")
    return "".join(out).encode()


# ---------------------------------------------------------------------- metrics with children


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` (never negative: a counter only goes up; ValueError otherwise)."""
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class HistogramChild:
    __slots__ = ("_bounds", "buckets", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds  # ascending, the last +Inf
        self.buckets = [0.0] * len(bounds)  # not cumulative
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count `amount` in the first bucket whose bound is >= it. NaN lands in no bucket but
        makes the sum NaN (as in prometheus_client)."""
        self.sum += amount
        if not math.isnan(amount):
            self.buckets[bisect_left(self._bounds, amount)] += 1.0


ChildT = TypeVar("ChildT", CounterChild, GaugeChild, HistogramChild)


class _Metric(Generic[ChildT]):
    """A family of children, one per label-value tuple (in first-use order, as in the text)."""

    _kind: Kind

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: Registry | None = None,
    ) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name: {name!r}")
        for label in labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name: {label!r}")
        self._name = name
        self._help = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], ChildT] = {}
        self._only: ChildT | None = None if labelnames else self._new_child()
        if self._only is not None:
            self._children[()] = self._only
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> ChildT:
        raise NotImplementedError

    def _single(self) -> ChildT:
        if self._only is None:
            raise ValueError(f"{self._name} has labels: use .labels(...)")
        return self._only

    def labels(self, *labelvalues: object) -> ChildT:
        """The child of these label values (made on first use). Values are turned into text."""
        if not self._labelnames:
            raise ValueError(f"{self._name} has no labels")
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(f"{self._name}: incorrect label count")
        key = tuple(str(v) for v in labelvalues)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def remove(self, *labelvalues: object) -> None:
        """Drop one child, if there is one (as prometheus_client does since 0.22)."""
        if not self._labelnames:
            raise ValueError(f"{self._name} has no labels")
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(f"{self._name}: incorrect label count")
        self._children.pop(tuple(str(v) for v in labelvalues), None)

    def clear(self) -> None:
        if self._labelnames:
            self._children.clear()

    def _exposed_name(self) -> str:
        return self._name

    def _samples(self, labels: tuple[tuple[str, str], ...], child: ChildT) -> Iterator[Sample]:
        raise NotImplementedError

    def collect(self) -> Iterable[Family]:
        family = Family(self._exposed_name(), self._kind, self._help, self._labelnames)
        names = self._labelnames
        for key, child in self._children.items():
            family.samples.extend(self._samples(tuple(zip(names, key, strict=True)), child))
        return (family,)


class Counter(_Metric[CounterChild]):
    """A counter; exposed as `<name>_total` (a name given with `_total` loses it first)."""

    _kind = "counter"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: Registry | None = None,
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry=registry)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _exposed_name(self) -> str:
        return self._name + "_total"

    def _samples(
        self, labels: tuple[tuple[str, str], ...], child: CounterChild
    ) -> Iterator[Sample]:
        yield Sample(self._name + "_total", labels, child.value)

    def inc(self, amount: float = 1.0) -> None:
        self._single().inc(amount)


class Gauge(_Metric[GaugeChild]):
    _kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def _samples(self, labels: tuple[tuple[str, str], ...], child: GaugeChild) -> Iterator[Sample]:
        yield Sample(self._name, labels, child.value)

    def set(self, value: float) -> None:
        self._single().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._single().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._single().dec(amount)


class Histogram(_Metric[HistogramChild]):
    """Cumulative `_bucket{le=...}` series, then `_count` and `_sum` (no `_sum` when the first
    bound is negative, as in prometheus_client). `+Inf` is added to the bounds if missing."""

    _kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: Registry | None = None,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("histogram buckets must be in ascending order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError("a histogram needs at least two buckets")
        if "le" in labelnames:
            raise ValueError("`le` is the histogram's own label")
        self._bounds = tuple(bounds)
        self._le = tuple(format_value(b) for b in bounds)
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def _samples(
        self, labels: tuple[tuple[str, str], ...], child: HistogramChild
    ) -> Iterator[Sample]:
        name = self._name
        running = 0.0
        for le, n in zip(self._le, child.buckets, strict=True):
            running += n
            yield Sample(f"{name}_bucket", (*labels, ("le", le)), running)
        yield Sample(f"{name}_count", labels, running)
        if self._bounds[0] >= 0:
            yield Sample(f"{name}_sum", labels, child.sum)

    def observe(self, amount: float) -> None:
        self._single().observe(amount)


# ---------------------------------------------------------------------- process_* (Linux /proc)


class ProcessCollector:
    """The `process_*` series of prometheus_client's ProcessCollector, read the same way: CPU,
    memory and start time from `<proc>/<pid>/stat`, the fd limit from `<proc>/<pid>/limits`, open
    fds by listing `<proc>/<pid>/fd`. Nothing when /proc is not there (not Linux)."""

    def __init__(
        self, *, proc: str = "/proc", pid: str = "self", registry: Registry | None = None
    ) -> None:
        self._proc = proc
        self._pid = pid
        try:
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError):  # pragma: no cover - every Linux has it
            self._ticks = 100.0
        try:
            self._pagesize = os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):  # pragma: no cover
            self._pagesize = 4096
        try:
            self._btime = _boot_time(os.path.join(proc, "stat"))
        except OSError:
            self._btime = 0.0
        if registry is not None:
            registry.register(self)

    def collect(self) -> list[Family]:
        if not self._btime:
            return []
        pid = os.path.join(self._proc, self._pid)
        result: list[Family] = []
        try:
            with open(os.path.join(pid, "stat"), "rb") as stat:
                parts = stat.read().split(b")")[-1].split()
            result += [
                _one("process_virtual_memory_bytes", "gauge", _VMEM, float(parts[20])),
                _one(
                    "process_resident_memory_bytes",
                    "gauge",
                    _RSS,
                    float(parts[21]) * self._pagesize,
                ),
                _one(
                    "process_start_time_seconds",
                    "gauge",
                    _START,
                    float(parts[19]) / self._ticks + self._btime,
                ),
                _one(
                    "process_cpu_seconds_total",
                    "counter",
                    _CPU,
                    float(parts[11]) / self._ticks + float(parts[12]) / self._ticks,
                ),
            ]
        except OSError:
            pass
        try:
            max_fds: Family | None = None
            with open(os.path.join(pid, "limits"), "rb") as limits:
                for line in limits:
                    if line.startswith(b"Max open file"):
                        max_fds = _one("process_max_fds", "gauge", _MAX_FDS, float(line.split()[3]))
                        break
            open_fds = len(os.listdir(os.path.join(pid, "fd")))
            result.append(_one("process_open_fds", "gauge", _OPEN_FDS, float(open_fds)))
            if max_fds is not None:
                result.append(max_fds)
        except OSError:
            pass
        return result


_VMEM = "Virtual memory size in bytes."
_RSS = "Resident memory size in bytes."
_START = "Start time of the process since unix epoch in seconds."
_CPU = "Total user and system CPU time spent in seconds."
_MAX_FDS = "Maximum number of open file descriptors."
_OPEN_FDS = "Number of open file descriptors."


def _one(name: str, kind: Kind, help_text: str, value: float) -> Family:
    return Family(name, kind, help_text, (), [Sample(name, (), value)])


def _boot_time(path: str) -> float:
    with open(path, "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0
