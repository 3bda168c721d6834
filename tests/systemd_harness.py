"""A real systemd (the distribution's, as PID 1) in a throw-away machine, for the end-to-end test
of the unit. `realsystemd/container.sh` does the namespaces and mounts; this drives it:

    with Machine.create(tmp) as m:        # overlay of / (writes in RAM), not yet booted
        m.chroot("/usr/bin/python3", "-m", "venv", "/opt/x")   # install things before boot
        m.write("/etc/x.conf", "...")      # files straight into the machine's /
        m.boot()
        m.run("systemctl", "start", "x")   # inside the booted machine
    # always torn down: powered off, unmounted, cgroup removed

`unavailable()` says why this machine cannot do it (not root, no overlayfs, no systemd, ...).
Everything runs in fresh namespaces: the machine's network is its own loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "realsystemd" / "container.sh"
SYSTEMD = Path("/lib/systemd/systemd")
TOOLS = ("nsenter", "unshare", "script", "capsh", "setsid", "mount", "systemctl", "journalctl")
COMMAND_TIMEOUT = 120.0


def unavailable() -> str | None:
    """Why a real systemd cannot boot here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (mount, unshare, cgroups)"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed (apt-get install systemd)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (util-linux, bsdutils, libcap2-bin, systemd)"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        return f"cannot read /proc/filesystems: {exc}"
    if "overlay" not in filesystems:
        return "the kernel has no overlayfs"
    cgroup2 = Path("/sys/fs/cgroup")
    if not (cgroup2 / "cgroup.procs").exists():
        cgroup2 = cgroup2 / "unified"
    if not (cgroup2 / "cgroup.procs").exists():
        return "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
    if not os.access(cgroup2, os.W_OK):
        return f"{cgroup2} is not writable"
    return None


class Machine:
    """One booted (or bootable) machine; see the module docstring."""

    def __init__(self, box: Path) -> None:
        self.box = box
        self.root = box / "root"
        self._env = {**os.environ, "BOX": str(box), "BOX_NAME": f"sentinel-test-{os.getpid()}"}

    @classmethod
    @contextmanager
    def create(cls, box: Path) -> Iterator[Machine]:
        machine = cls(box)
        try:
            machine._script("setup")
            yield machine
        finally:
            machine.teardown()

    def _script(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"container.sh {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{self.console_tail()}"
            )
        return result.stdout

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = (self.box / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- console ---\n" + "\n".join(text.splitlines()[-lines:])

    def path(self, inside: str) -> Path:
        """Where the machine's `inside` path is, seen from here (its / is an overlay we hold)."""
        return self.root / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        path = self.path(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    def chroot(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run argv in the machine's file system before boot (this machine's network)."""
        return self._script("chroot", *argv, timeout=timeout)

    def boot(self) -> None:
        self._script("boot", timeout=90)

    @property
    def host_pid(self) -> int:
        """systemd's PID as seen from here (for nsenter)."""
        return int((self.box / "systemd.hostpid").read_text().strip())

    def run(
        self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the booted machine (all its namespaces), with a clean environment."""
        result = subprocess.run(
            ["bash", str(SCRIPT), "exec", *argv],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def popen_in_network(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """argv in the machine's network namespace only: it sees this machine's files but the
        machine's loopback (for a server the service under test talks to)."""
        return subprocess.Popen(
            ["nsenter", f"--net=/proc/{self.host_pid}/ns/net", "--", *argv], **kwargs
        )

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p A -p B unit` as a dict."""
        args = [a for p in props for a in ("-p", p)]
        out = self.run("systemctl", "show", *args, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, *extra: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, *extra).stdout

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Poll predicate (inside-machine queries) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")

    def teardown(self) -> None:
        """Power off, unmount, remove the cgroup. Safe to call twice, and after a failed setup."""
        subprocess.run(
            ["bash", str(SCRIPT), "teardown"],
            env=self._env,
            capture_output=True,
            timeout=90,
            check=False,
        )
