"""The CLI as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_proc import free_port
from sentinel import __version__
from targets import target_server

ROOT = Path(__file__).resolve().parents[2]


def sentinel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_version() -> None:
    run = sentinel("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"sentinel {__version__}"


def test_check_accepts_the_example_and_prints_a_summary() -> None:
    run = sentinel("check", "-c", str(ROOT / "sites.example.toml"))
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout
    assert "sites: 3" in run.stdout
    assert "sentinel-itself" in run.stdout and "every 10s" in run.stdout


def test_check_reports_every_error_with_exit_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[sites]]\nname = "blog"\nurl = "http://x/"\ninterval = "soon"\n'
        '[[sites]]\nname = "shop"\nurl = "http://y/"\ntimeoutt = "1s"\n'
    )
    run = sentinel("check", "-c", str(bad))
    assert run.returncode == 78
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2
    assert 'sites[0] "blog": interval' in lines[0]
    assert 'sites[1] "shop": timeoutt: unknown key' in lines[1]
    assert "Traceback" not in run.stderr


def test_config_path_defaults_to_env_variable(tmp_path: Path) -> None:
    import os

    run = sentinel("check", env={**os.environ, "SENTINEL_CONFIG": str(ROOT / "sites.example.toml")})
    assert run.returncode == 0, run.stderr


def test_probe_urls_prints_a_table_and_exit_code() -> None:
    with target_server() as target:
        good = sentinel("probe", target.url("/ok"))
        assert good.returncode == 0, good.stderr
        assert "up" in good.stdout and "200" in good.stdout
        bad = sentinel(
            "probe",
            "--timeout",
            "2s",
            target.url("/ok"),
            f"http://127.0.0.1:{free_port()}/",
            f"127.0.0.1:{target.port}",
        )
        assert bad.returncode == 1
        header, *rows = bad.stdout.strip().splitlines()
        assert header.split()[:4] == ["site", "result", "status", "total"]
        assert len(rows) == 3
        assert "connect_refused" in rows[1] and "FAILED" in rows[1]
        assert "up" in rows[2]  # the TCP check of the target's port


def test_probe_config_sites_by_name(tmp_path: Path) -> None:
    with target_server() as target:
        cfg = tmp_path / "s.toml"
        cfg.write_text(
            f'[[sites]]\nname = "a"\nurl = "{target.url("/ok")}"\n'
            f'[[sites]]\nname = "b"\nurl = "{target.url("/fail")}"\n'
        )
        only_a = sentinel("probe", "-c", str(cfg), "--site", "a")
        assert only_a.returncode == 0 and " b " not in only_a.stdout
        both = sentinel("probe", "-c", str(cfg))
        assert both.returncode == 1 and "status" in both.stdout
        unknown = sentinel("probe", "-c", str(cfg), "--site", "zzz")
        assert unknown.returncode == 2 and "no such site: zzz" in unknown.stderr
