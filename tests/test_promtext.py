"""sentinel.promtext against prometheus_client: the same operations give the same text.

prometheus_client left sentinel's runtime (its import cost ~3 MiB of RSS) but stays a test
dependency as the reference: users' dashboards and rules read what it wrote.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prometheus_client as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from sentinel import promtext

pc.disable_created_metrics()  # type: ignore[no-untyped-call]

HOSTILE = [
    '"',
    "\\",
    "\n",
    '\\"',
    "\\n",
    "a\nb",
    "",
    " ",
    "é",
    "日本",
    "🙂",
    "\u202e",
    "\x00",
    "{}=,",
]
label_values = st.sampled_from(HOSTILE) | st.text(
    alphabet=st.characters(codec="utf-8"), max_size=12
)
values = (
    st.floats()  # every float: NaN, ±inf, -0.0, subnormals, huge
    | st.sampled_from([0, 1, -1, 1e6, 1e-6, 123456789.0, 1e21, 5e-324, 1.7976931348623157e308])
    | st.integers(-(10**15), 10**15)
)

# (kind, name, help, label names): label names deliberately not in sorted order, and "le"
# sorted both before and after a histogram's own labels.
SPECS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("counter", "c_plain", "A counter", ()),
    ("counter", "c_labels", 'Help with "quotes", a \\ and a\nnewline', ("zone", "kind")),
    ("counter", "c_named_total", "Given with _total", ("site",)),
    ("gauge", "g_plain", "A gauge", ()),
    ("gauge", "g_labels", "Labelled gauge é", ("site", "phase")),
    ("histogram", "h_plain", "A histogram", ()),
    ("histogram", "h_labels", "A labelled histogram", ("site", "a")),
)
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def build_pc() -> tuple[pc.CollectorRegistry, list[Any]]:
    r = pc.CollectorRegistry(auto_describe=True)
    made: list[Any] = []
    for kind, name, doc, labels in SPECS:
        if kind == "counter":
            made.append(pc.Counter(name, doc, labels, registry=r))
        elif kind == "gauge":
            made.append(pc.Gauge(name, doc, labels, registry=r))
        else:
            made.append(pc.Histogram(name, doc, labels, buckets=BUCKETS, registry=r))
    return r, made


def build_ours() -> tuple[promtext.Registry, list[Any]]:
    r = promtext.Registry()
    made: list[Any] = []
    for kind, name, doc, labels in SPECS:
        if kind == "counter":
            made.append(promtext.Counter(name, doc, labels, registry=r))
        elif kind == "gauge":
            made.append(promtext.Gauge(name, doc, labels, registry=r))
        else:
            made.append(promtext.Histogram(name, doc, labels, buckets=BUCKETS, registry=r))
    return r, made


METHODS = {"counter": ("inc",), "gauge": ("set", "inc", "dec"), "histogram": ("observe",)}


@st.composite
def operations(draw: st.DrawFn) -> tuple[int, str, tuple[str, ...], float]:
    index = draw(st.integers(0, len(SPECS) - 1))
    kind, _, _, labels = SPECS[index]
    method = draw(st.sampled_from((*METHODS[kind], "remove", "labels")))
    lv = tuple(draw(label_values) for _ in labels)
    reuse: bool = draw(st.booleans())
    if labels and reuse:  # a value used before: children get updated, not only made
        lv = tuple(HOSTILE[1] for _ in labels)
    return index, method, lv, draw(values)


def apply(made: list[Any], op: tuple[int, str, tuple[str, ...], float]) -> str | None:
    """Do one operation; the name of the exception it raised, if any."""
    index, method, lv, value = op
    metric = made[index]
    try:
        if method == "remove":
            if lv:
                metric.remove(*lv)
            return None
        target = metric.labels(*lv) if lv else metric
        if method != "labels":
            getattr(target, method)(value)
    except (ValueError, KeyError) as exc:
        return type(exc).__name__
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(operations(), max_size=40))
def test_the_same_operations_give_the_same_text(
    ops: list[tuple[int, str, tuple[str, ...], float]],
) -> None:
    theirs, their_metrics = build_pc()
    ours, our_metrics = build_ours()
    for op in ops:
        assert apply(our_metrics, op) == apply(their_metrics, op), op
    assert ours.render() == pc.generate_latest(theirs)


@given(values)
def test_values_are_formatted_like_float_to_go_string(value: float) -> None:
    assert promtext.format_value(value) == floatToGoString(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (1, "1.0"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
    ],
)
def test_value_formats(value: float, text: str) -> None:
    assert promtext.format_value(value) == text


def custom_pc(rows: Sequence[tuple[str, float]]) -> Callable[[], Any]:
    class C:
        def collect(self) -> Any:
            f = GaugeMetricFamily("x_active", "Custom\\family", labels=["window"])
            for name, v in rows:
                f.add_metric([name], v)
            yield f
            yield GaugeMetricFamily("x_count", "No labels", value=float(len(rows)))

    return C


class CustomOurs:
    def __init__(self, rows: Sequence[tuple[str, float]]) -> None:
        self.rows = rows

    def collect(self) -> list[promtext.Family]:
        f = promtext.Family("x_active", "gauge", "Custom\\family", ("window",))
        for name, v in self.rows:
            f.add([name], v)
        count = promtext.Family("x_count", "gauge", "No labels")
        count.add([], float(len(self.rows)))
        return [f, count]


@given(st.lists(st.tuples(label_values, values), max_size=6))
def test_custom_collectors_give_the_same_text(rows: list[tuple[str, float]]) -> None:
    theirs = pc.CollectorRegistry(auto_describe=True)
    theirs.register(custom_pc(rows)())
    ours = promtext.Registry()
    ours.register(CustomOurs(rows))
    assert ours.render() == pc.generate_latest(theirs)


def test_a_name_registered_twice_is_refused() -> None:
    r = promtext.Registry()
    promtext.Counter("jobs", "Jobs", registry=r)
    for make in (
        lambda: promtext.Counter("jobs", "Again", registry=r),
        lambda: promtext.Gauge("jobs_total", "Clash", registry=r),
    ):
        with pytest.raises(ValueError, match="duplicated"):
            make()


def test_misuse_is_a_value_error() -> None:
    g = promtext.Gauge("g", "G", ["site"])
    with pytest.raises(ValueError):
        g.set(1)  # labelled: needs .labels()
    with pytest.raises(ValueError):
        g.labels("a", "b")
    with pytest.raises(ValueError):
        promtext.Gauge("bad name", "x")
    with pytest.raises(ValueError):
        promtext.Gauge("g", "x", ["__reserved"])
    with pytest.raises(ValueError):
        promtext.Histogram("h", "x", buckets=(2.0, 1.0))
    with pytest.raises(ValueError):
        promtext.Counter("c", "x").inc(-1)


# ---------------------------------------------------------------------- process_*


def fake_proc(
    root: Path, *, utime: int, stime: int, start: int, vsize: int, rss: int, fds: int
) -> None:
    (root / "self" / "fd").mkdir(parents=True)
    (root / "stat").write_text("cpu  1 2 3 4\nbtime 1764000000\nprocesses 9\n")
    fields = ["S", "1", "1", "1", "0", "-1", "4194560", "0", "0", "0", "0", str(utime)]
    fields += [str(stime), "0", "0", "20", "0", "1", "0", str(start), str(vsize), str(rss)]
    (root / "self" / "stat").write_text(f"4242 (a) (b) {' '.join(fields)} 0 0\n")
    (root / "self" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max cpu time              unlimited            unlimited            seconds\n"
        "Max open files            1024                 524288               files\n"
    )
    for n in range(fds):
        (root / "self" / "fd" / str(n)).write_text("")


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 2**63),
    st.integers(0, 2**40),
    st.integers(0, 5),
)
def test_process_series_are_prometheus_clients(
    utime: int, stime: int, start: int, vsize: int, rss: int, fds: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        fake_proc(Path(d), utime=utime, stime=stime, start=start, vsize=vsize, rss=rss, fds=fds)
        theirs = pc.CollectorRegistry()
        pc.ProcessCollector(proc=d, registry=theirs)
        ours = promtext.Registry()
        promtext.ProcessCollector(proc=d, registry=ours)
        assert ours.render() == pc.generate_latest(theirs)


def test_process_series_of_this_process_have_the_same_names_help_and_types() -> None:
    def shape(text: bytes) -> list[str]:
        return [line for line in text.decode().splitlines() if line.startswith("#")]

    theirs = pc.CollectorRegistry()
    pc.ProcessCollector(registry=theirs)
    ours = promtext.Registry()
    promtext.ProcessCollector(registry=ours)
    assert shape(ours.render()) == shape(pc.generate_latest(theirs))
    assert len(shape(ours.render())) == 12  # six families: Linux has them all
    rss = ours.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 1e6


def test_no_proc_no_process_series() -> None:
    with tempfile.TemporaryDirectory() as d:
        r = promtext.Registry()
        promtext.ProcessCollector(proc=os.path.join(d, "missing"), registry=r)
        assert r.render() == b""


def test_get_sample_value() -> None:
    r = promtext.Registry()
    h = promtext.Histogram("lag", "Lag", buckets=(0.1, 1.0), registry=r)
    h.observe(0.5)
    c = promtext.Counter("pings", "Pings", ["kind"], registry=r)
    c.labels("ok").inc(2)
    assert r.get_sample_value("lag_bucket", {"le": "1.0"}) == 1.0
    assert r.get_sample_value("lag_bucket", {"le": "0.1"}) == 0.0
    assert r.get_sample_value("pings_total", {"kind": "ok"}) == 2.0
    assert r.get_sample_value("pings_total", {"kind": "fail"}) is None
    c.remove("fail")  # none: nothing happens
    c.remove("ok")
    assert r.get_sample_value("pings_total", {"kind": "ok"}) is None
