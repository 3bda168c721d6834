"""The files users deploy: the systemd unit (real systemd-analyze) and the Prometheus rules (real
promtool). Each test skips, saying why, when its tool is not installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "sentinel.service"
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "sentinel.json"
EXEC_START_BINARY = "/opt/sentinel/.venv/bin/sentinel"
TOOL_TIMEOUT = 60


def tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/bin/{name}") if Path(p).exists()), None
    )
    if path is None:
        if os.environ.get("CI") == "true":  # CI installs it (.ci/run): missing means broken CI
            pytest.fail(f"{name} is not installed, and CI=true")
        pytest.skip(f"{name} is not installed (install it to check the deploy files)")
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, cwd=cwd, check=False
    )


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: sections of keys that may repeat; comments start with # or ;."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())["Service"]


# --- the unit file's contract (PRODUCT.md "systemd") ---


def test_unit_declares_the_contracted_service_settings(service: dict[str, list[str]]) -> None:
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": f"{EXEC_START_BINARY} run -c /etc/sentinel/sites.toml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "60s",
        "Restart": "on-failure",
        "RestartSec": "5s",
        "RestartPreventExitStatus": "69 78 243",
        "StateDirectory": "sentinel",
        "DynamicUser": "yes",
        "LoadCredential": "smtp-password:/etc/sentinel/smtp-password",
    }
    assert {key: service.get(key, [None])[-1] for key in expected} == expected
    assert "PYTHONUNBUFFERED=1" in service["Environment"]


def test_unit_keeps_what_the_daemon_needs(service: dict[str, list[str]]) -> None:
    # Outbound probes over IPv4 and IPv6, DNS, the notify socket: these address families must stay.
    families = set(service["RestrictAddressFamilies"][-1].split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families
    # No IP allow list and no private network: probes go to arbitrary hosts.
    assert "IPAddressDeny" not in service
    assert service.get("PrivateNetwork", ["no"])[-1] == "no"
    # Early warnings read /proc/<pid> of other services' processes and /proc/stat.
    assert service.get("ProtectProc", ["default"])[-1] == "default"
    assert service.get("ProcSubset", ["all"])[-1] == "all"
    # The cgroup tree stays readable (ProtectControlGroups makes it read-only, not hidden).
    assert "InaccessiblePaths" not in service


# --- systemd-analyze ---


def test_systemd_analyze_security_rates_the_unit_at_most_2_0() -> None:
    analyze = tool("systemd-analyze")
    result = run(analyze, "security", "--offline=yes", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for sentinel\.service:\s*([0-9.]+)", output)
    assert match, f"no exposure level in systemd-analyze output:\n{output}"
    exposure = float(match.group(1))
    assert exposure <= 2.0, output


def test_systemd_analyze_security_threshold_agrees() -> None:
    # --threshold is on the internal 0..100 scale: 20 means an exposure of 2.0.
    analyze = tool("systemd-analyze")
    result = run(analyze, "security", "--offline=yes", "--threshold=20", str(UNIT))
    assert result.returncode == 0, result.stdout + result.stderr


def _verify_cannot_run(output: str) -> bool:
    return any(
        marker in output
        for marker in ("Failed to initialize manager", "Failed to set up", "Failed to setup")
    )


def test_systemd_analyze_verify_complains_only_about_the_missing_binary() -> None:
    analyze = tool("systemd-analyze")
    if Path(EXEC_START_BINARY).exists():
        pytest.skip(f"{EXEC_START_BINARY} exists here; the next test covers this case")
    result = run(analyze, "verify", str(UNIT))
    output = (result.stdout + result.stderr).strip()
    if _verify_cannot_run(output):
        pytest.skip(f"systemd-analyze verify cannot run here: {output}")
    problems = [line for line in output.splitlines() if EXEC_START_BINARY not in line]
    assert problems == [], output


def test_systemd_analyze_verify_is_clean_when_the_binary_exists(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # Same unit, ExecStart pointing at an executable that exists here.
    unit = tmp_path / "sentinel.service"
    unit.write_text(UNIT.read_text().replace(EXEC_START_BINARY, sys.executable))
    result = run(analyze, "verify", str(unit))
    output = (result.stdout + result.stderr).strip()
    if _verify_cannot_run(output):
        pytest.skip(f"systemd-analyze verify cannot run here: {output}")
    assert result.returncode == 0, output
    assert output == ""


# --- MemoryDenyWriteExecute=yes ---

_MDWE_PROBE = r"""
import ctypes, importlib, pkgutil, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print("unsupported")
    sys.exit(0)
import asyncio, sqlite3, ssl
import aiohttp, aiohttp.web, aiosmtplib, pydantic
import sentinel
for info in pkgutil.walk_packages(sentinel.__path__, "sentinel."):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except MemoryError:
        raise
    except Exception as exc:  # another module being written right now is not our concern
        print("skipped", info.name, type(exc).__name__, file=sys.stderr)
ssl.create_default_context()
sqlite3.connect(":memory:").execute("create table t(x)")

async def roundtrip():
    async def hello(request):
        return aiohttp.web.Response(text="ok")
    app = aiohttp.web.Application()
    app.router.add_get("/", hello)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            assert await response.text() == "ok"
    await runner.cleanup()

asyncio.run(roundtrip())
print("ok")
"""


def test_daemon_stack_runs_with_write_execute_memory_denied() -> None:
    """The kernel's PR_SET_MDWE gives the same guarantee as MemoryDenyWriteExecute=yes: imports,
    TLS, SQLite and an aiohttp round trip must work without writable+executable memory."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_MDWE is Linux-only")
    result = run(sys.executable, "-c", _MDWE_PROBE)
    if result.stdout.strip() == "unsupported":
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr


# --- Prometheus ---


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = tool("promtool")
    result = run(promtool, "check", "rules", str(PROMETHEUS / "sentinel.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_alert_rules_cover_what_users_need() -> None:
    text = (PROMETHEUS / "sentinel.rules.yml").read_text()
    alerts = set(re.findall(r"^\s*- alert:\s*(\S+)", text, re.MULTILINE))
    assert alerts == {
        "SentinelSiteDown",
        "SentinelCertificateExpiringSoon",
        "SentinelOutboxStuck",
        "SentinelEmailFailing",
        "SentinelConfigReloadFailed",
        "SentinelAbsent",
        "SentinelScheduleLagging",
        "SentinelSiteDownQuorum",
        "SentinelDeadLetters",
    }


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    promtool = tool("promtool")
    result = run(promtool, "test", "rules", "sentinel.rules.test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_config() -> None:
    promtool = tool("promtool")
    result = run(promtool, "check", "config", "scrape.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


# --- CI installs these tools; it must fail, not skip, without them ---


def test_ci_fails_when_a_tool_the_tests_need_is_missing() -> None:
    require = ROOT / ".ci" / "require-tools"
    result = subprocess.run(
        ["/bin/bash", str(require)],
        env={"PATH": "/nonexistent", "CI": "true"},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert "ci: promtool is missing" in result.stderr
    assert "ci: systemd-analyze is missing" in result.stderr


def test_ci_run_checks_the_tools_under_ci_true() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert 'if [ "${CI:-}" = true ]; then' in text and "  .ci/require-tools\n" in text


# --- Grafana (its queries run against a real Prometheus: tests/e2e/test_prometheus_e2e.py) ---


def test_the_dashboard_is_importable_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance", "site"} <= variables
