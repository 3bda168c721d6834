"""Host names for the fleet, served by a real DNS server on loopback (`compare.py --names`).

Both probers resolve names the way they do in production: sentinel through glibc's
getaddrinfo (libuv's pool under uvloop, or sentinel's own resolver threads), blackbox_exporter
through Go's resolver; both read `/etc/resolv.conf` and neither caches. To make them ask a DNS
server we start, without touching the machine's own resolver configuration, the benchmark runs
in namespaces of its own (`unshare --net --mount`, as root):

- a network namespace: its own loopback (brought up here), so dnsmasq can listen on port 53
  (resolv.conf has no port field) and nothing of the host's network is reachable or disturbed;
- a mount namespace: a resolv.conf naming only `127.0.0.53` is bind-mounted over
  `/etc/resolv.conf`, visible to this process tree only (the mount is private to it).

dnsmasq runs as a plain child process (`--no-daemon --conf-file=/dev/null`, never a service),
answering `t<i>.bench.test` with 127.0.0.1 from a hosts-format file (`--addn-hosts`), with
`--no-resolv --no-hosts` so it forwards nothing and knows nothing else. Every probe of both
tools then costs a real UDP query and answer (A and AAAA for getaddrinfo's AF_UNSPEC; blackbox,
configured `preferred_ip_protocol: ip4`, asks A first). The names are not in /etc/hosts, which
glibc consults first (nsswitch `files dns`), so the lookup does reach the server.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from benchlib import BenchError, stop_process

NAMESPACE_ENV = "SENTINEL_BENCH_NETNS"
SERVER = "127.0.0.53"
DOMAIN = "bench.test"
TEMPLATE = "t{i}." + DOMAIN
TOOLS = ("unshare", "ip", "mount", "dnsmasq")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).exists()), None
    )


def unavailable() -> str | None:
    """Why the host-name mode cannot run here (a sentence), or None if it can."""
    missing = [tool for tool in TOOLS if _which(tool) is None]
    if missing:
        hint = " (apt-get install -y dnsmasq)" if "dnsmasq" in missing else ""
        return f"missing {', '.join(missing)}{hint}"
    if os.geteuid() != 0:
        return "needs root for unshare --net --mount (a private loopback and resolv.conf)"
    return None


def inside() -> bool:
    return os.environ.get(NAMESPACE_ENV) == "1"


def reexec(argv: list[str]) -> int:
    """Run `python argv...` again inside new network and mount namespaces; its exit code."""
    unshare = _which("unshare")
    assert unshare is not None
    env = {**os.environ, NAMESPACE_ENV: "1"}
    cmd = [unshare, "--net", "--mount", "--fork", "--", sys.executable, *argv]
    return subprocess.call(cmd, env=env)


class LoopbackDns:
    """Inside the namespaces: loopback up, resolv.conf pointing at dnsmasq serving N names."""

    def __init__(self, sites: int) -> None:
        if not inside():
            raise BenchError("LoopbackDns runs only inside the bench's own namespaces")
        self.sites = sites
        self.work = Path(tempfile.mkdtemp(prefix="bench-dns-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._mounted = False

    def __enter__(self) -> LoopbackDns:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        subprocess.run([_which("ip") or "ip", "link", "set", "lo", "up"], check=True)
        self.work.chmod(0o755)  # dnsmasq drops its privileges before it reads the hosts file
        hosts = self.work / "hosts"
        hosts.write_text("".join(f"127.0.0.1 {TEMPLATE.format(i=i)}\n" for i in range(self.sites)))
        hosts.chmod(0o644)
        resolv = self.work / "resolv.conf"
        resolv.write_text(f"# bench/loopdns.py: this process tree only\nnameserver {SERVER}\n")
        resolv.chmod(0o644)
        subprocess.run(
            [_which("mount") or "mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True
        )
        self._mounted = True
        self.proc = subprocess.Popen(
            [
                _which("dnsmasq") or "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                f"--listen-address={SERVER}",
                "--bind-interfaces",
                "--port=53",
                "--no-resolv",
                "--no-hosts",
                f"--addn-hosts={hosts}",
                "--pid-file=",
                "--log-facility=-",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.work / "dnsmasq.log").open("ab"),
        )
        deadline = time.monotonic() + 20
        name = TEMPLATE.format(i=self.sites - 1)
        while True:
            try:
                found = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
            except OSError:
                found = set()
            if found == {"127.0.0.1"}:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.work / "dnsmasq.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"dnsmasq does not answer {name} (got {found}):\n{log}")
            time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def answered(self) -> int | None:
        """Queries dnsmasq answered from its hosts file so far (its SIGUSR1 statistics), or
        None if it does not say: evidence that the probes did ask the server."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        log = self.work / "dnsmasq.log"
        before = log.stat().st_size if log.exists() else 0
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = log.read_bytes()[before:].decode(errors="replace")
            found = re.search(r"queries forwarded \d+, queries answered locally (\d+)", text)
            if found:
                return int(found[1])
            time.sleep(0.1)
        return None

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self._mounted:
            subprocess.run(["umount", "/etc/resolv.conf"], check=False)
            self._mounted = False
        shutil.rmtree(self.work, ignore_errors=True)
