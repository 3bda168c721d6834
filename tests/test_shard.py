"""Rendezvous sharding (sentinel.shard): a partition of the sites, stable when a shard is added,
the same answer in every process, and one-line errors for a bad `shard = "k/n"`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import ConfigError, parse_config
from sentinel.shard import MAX_SHARDS, Shard, parse_shard, shard_of

names = st.text(min_size=1, max_size=40)


@given(name=names, count=st.integers(min_value=1, max_value=40))
def test_every_site_is_on_exactly_one_shard(name: str, count: int) -> None:
    owners = [k for k in range(1, count + 1) if Shard(k, count).owns(name)]
    assert owners == [shard_of(name, count)]


@given(name=names, count=st.integers(min_value=1, max_value=40))
def test_adding_a_shard_moves_a_site_only_onto_the_new_shard(name: str, count: int) -> None:
    before, after = shard_of(name, count), shard_of(name, count + 1)
    assert after in (before, count + 1)


@settings(max_examples=25, deadline=None)
@given(salt=st.text(max_size=8), count=st.integers(min_value=1, max_value=12))
def test_adding_a_shard_moves_about_one_in_n_plus_one(salt: str, count: int) -> None:
    sites = [f"{salt}site-{i}.example.org" for i in range(3000)]
    moved = sum(1 for s in sites if shard_of(s, count) != shard_of(s, count + 1))
    expected = len(sites) / (count + 1)
    # Binomial: the standard deviation is at most sqrt(3000 / 4) ~ 27; allow ~6 of them.
    assert abs(moved - expected) < 165, (moved, expected)


@settings(max_examples=25, deadline=None)
@given(salt=st.text(max_size=8), count=st.integers(min_value=2, max_value=12))
def test_shards_get_about_equal_shares(salt: str, count: int) -> None:
    sites = [f"{salt}{i}" for i in range(3000)]
    sizes = [len(Shard(k, count).select(sites)) for k in range(1, count + 1)]
    assert sum(sizes) == len(sites)
    for size in sizes:
        assert abs(size - len(sites) / count) < 165, sizes


def test_the_hash_is_the_same_in_another_process_and_pinned() -> None:
    """Python's hash() is salted per process; the shard of a name must never change (a new
    version moving sites between machines would leave some unwatched)."""
    sites = [f"site-{i}" for i in range(50)]
    here = [shard_of(s, 7) for s in sites]
    code = f"from sentinel.shard import shard_of;print([shard_of(s, 7) for s in {sites!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert there == repr(here)
    assert [shard_of(n, 3) for n in ("shop", "blog", "api", "mail", "status")] == PINNED


PINNED = [3, 1, 1, 2, 1]


@pytest.mark.parametrize(
    ("text", "shard"),
    [("1/1", Shard(1, 1)), ("2/3", Shard(2, 3)), (" 3 / 3 ", Shard(3, 3))],
)
def test_a_shard_is_written_k_slash_n(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(parse_shard(text)) == text.replace(" ", "")


@pytest.mark.parametrize(
    "value", ["0/3", "4/3", "3", "2/0", "a/b", "", "-1/3", 2, f"1/{MAX_SHARDS + 1}"]
)
def test_a_bad_shard_is_one_line_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sentinel": {"shard": value}, "sites": []})
    [line] = info.value.errors
    assert line.startswith("sentinel: shard: ")
    assert "k/n" in line and "\n" not in line


def test_the_config_holds_the_shard() -> None:
    assert parse_config({"sentinel": {"shard": "2/3"}, "sites": []}).shard == Shard(2, 3)
    assert parse_config({"sites": []}).shard is None


def test_heartbeats_stay_with_shard_one() -> None:
    assert Shard(1, 3).owns_heartbeats
    assert not Shard(2, 3).owns_heartbeats


def test_check_says_how_many_sites_this_shard_probes(tmp_path: Path) -> None:
    names = ["shop", "blog", "api", "mail", "status"]
    sites = "".join(f'[[sites]]\nname = "{n}"\nurl = "http://127.0.0.1:1/"\n' for n in names)
    path = tmp_path / "sites.toml"
    path.write_text(f'[sentinel]\nshard = "1/3"\n{sites}')
    run = subprocess.run(
        [sys.executable, "-m", "sentinel", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert f"shard: 1/3 (probes {PINNED.count(1)} of these sites)" in run.stdout
