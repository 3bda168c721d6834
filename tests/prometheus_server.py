"""A real Prometheus (Debian's `prometheus`) on a loopback port with a temporary config and TSDB,
for tests that scrape a real sentinel: start it, ask its HTTP API, stop it (by its own PID)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from daemon_proc import free_port, wait_until


def prometheus_binary() -> str:
    """The binary, or a skip (a failure under CI=true, which installs it: .ci/run)."""
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed, and CI=true")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    return path


class PrometheusProcess:
    def __init__(self, tmp: Path, config_yaml: str) -> None:
        self.dir = tmp / "prometheus"
        self.dir.mkdir(exist_ok=True)
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(config_yaml)
        self.port = free_port()
        self.log_path = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
                cwd=self.dir,
            )
        wait_until(self.ready, timeout=60)  # generous: a loaded CI machine
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) `expr` gives now."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets(self) -> dict[str, dict[str, Any]]:
        """Active targets by job name: health ("up"/"down"/"unknown") and lastError."""
        return {t["labels"]["job"]: t for t in self.api("targets")["activeTargets"]}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
