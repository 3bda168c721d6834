"""Run-time silences as a person uses them: `sentinel silence` against a running daemon holds
a DOWN email, survives a restart, and `sentinel unsilence` lets the held alert out."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from sentinel.config import parse_config
from sentinel.store import Store
from smtp_server import SmtpServer
from targets import target_server


def sentinel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config(url: str, smtp_port: int) -> str:
    return f"""
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2

[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine

[[sites]]
name = "shop"
url = "{url}"

[[sites]]
name = "blog"
url = "{url}"
"""


def downs(smtp: SmtpServer) -> list[str]:
    return [
        str(m.message["Subject"])
        for m in smtp.messages_received
        if str(m.message["Subject"]).startswith("[sentinel] DOWN")
    ]


@pytest.mark.slow
def test_a_silence_holds_the_down_email_across_a_restart_until_unsilenced(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 200}) as target, SmtpServer() as smtp:
        proc = sentinel_proc(config(target.url("/shop"), smtp.port)).start()
        cfg = str(proc.config_path)
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 1, timeout=15)

        run = sentinel("silence", "shop", "--for", "1h", "--reason", "deploying v2", "-c", cfg)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("silenced shop until ")
        wait_until(lambda: proc.metric("sentinel_silences_active") == 1, timeout=10)
        assert proc.status()["shop"]["silenced"][0]["reason"] == "deploying v2"
        assert proc.status()["blog"]["silenced"] == []

        target.routes["/shop"] = 500
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 0, timeout=15)
        wait_until(lambda: proc.metric("sentinel_site_up", site="blog") == 0, timeout=15)
        # blog is not silenced: its DOWN goes out; shop's is held.
        wait_until(lambda: downs(smtp), timeout=15)
        assert [d.split(" — ")[0] for d in downs(smtp)] == ["[sentinel] DOWN: blog"]

        # The silence is in the store: a restart keeps it.
        assert proc.stop() == 0
        proc.start()
        wait_until(lambda: proc.metric("sentinel_silences_active") == 1, timeout=15)

        listed = sentinel("silence", "--list", "-c", cfg)
        assert listed.returncode == 0, listed.stderr
        (row,) = listed.stdout.strip().splitlines()[1:]
        silence_id = row.split()[0]
        assert "shop" in row and "deploying v2" in row

        run = sentinel("unsilence", silence_id, "-c", cfg)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: len(downs(smtp)) == 2, timeout=15)
        assert downs(smtp)[1].startswith("[sentinel] DOWN: shop")
        assert proc.metric("sentinel_silences_active") == 0


def test_silence_commands_answer_bad_input_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "sites.toml"
    state = tmp_path / "state"
    cfg.write_text(
        f'[sentinel]\nstate_dir = "{state}"\n[[sites]]\nname = "shop"\nurl = "http://127.0.0.1:9/"\n'
    )
    cases = [
        (["silence", "nope", "--for", "1h"], 2, "no site named 'nope'"),
        (["silence", "shop"], 2, "silence needs --for"),
        (["silence", "--for", "1h"], 2, "needs a site name or --all"),
        (["silence", "shop", "--all", "--for", "1h"], 2, "needs a site name or --all"),
        (["silence", "shop", "--for", "soon"], 2, "invalid duration 'soon'"),
        (["silence", "shop", "--for", "100d"], 2, "at most 90d"),
        (["silence", "shop", "--for", "1h"], 1, "no state store at"),
    ]
    for args, code, message in cases:
        run = sentinel(*args, "-c", str(cfg))
        assert run.returncode == code, (args, run.stderr)
        (line,) = run.stderr.strip().splitlines()
        assert message in line, (args, line)
    # With a store (as the daemon leaves it), --all works and unknown ids are refused.
    Store.open(state).close()
    assert sentinel("silence", "--all", "--for", "10m", "-c", str(cfg)).returncode == 0
    listed = sentinel("silence", "--list", "-c", str(cfg)).stdout
    assert "(all)" in listed
    gone = sentinel("unsilence", "999", "-c", str(cfg))
    assert gone.returncode == 1 and "no silence with id 999" in gone.stderr
    parse_config(tomllib.loads(cfg.read_text()))  # the file stays a valid config


def test_a_silence_set_right_after_start_is_not_missed(tmp_path: Path) -> None:
    """The daemon's "changed elsewhere" baseline is taken when it loads the silences, so a
    silence committed before its first poll is still noticed (this raced before)."""
    from sentinel.daemon import Daemon

    state = tmp_path / "state"
    config = parse_config(
        tomllib.loads(
            f'[sentinel]\nlisten = ""\nstate_dir = "{state}"\n'
            '[[sites]]\nname = "shop"\nurl = "http://127.0.0.1:9/"\n'
        )
    )
    daemon = Daemon(str(tmp_path / "s.toml"), config, environ={})
    daemon.open_store()
    assert daemon.store is not None
    daemon._load_silences()  # at start
    with Store.open(state) as cli:  # the CLI, before the daemon's first poll
        cli.add_silence("shop", 2e9, "deploy", now=1e9)
    assert daemon.store.changed_elsewhere()
    daemon._load_silences()
    assert [s.site for s in daemon.silences] == ["shop"]
    daemon.store.close()
