"""`sentinel ping` and `sentinel wrap`: the job's side of a heartbeat.

Both read the config for the daemon's address (`[sentinel] listen`) and the heartbeat's token.
`wrap` runs a command, passes its output through, and reports start and end with the last
MAX_OUTPUT bytes of output; it exits with the command's exit code, whatever happens to the
pings: they have short timeouts, and a failed ping is a warning on stderr, never a different
exit code. A broken config does not stop the command from running either.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import BinaryIO, TextIO

from sentinel.config import Config, ConfigError, load_config, split_host_port
from sentinel.heartbeats.config import HeartbeatConfig, TokenError, read_token
from sentinel.heartbeats.state import MAX_OUTPUT

PING_TIMEOUT = 5.0  # seconds per ping: a job must never hang on its monitoring
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78
EXIT_NOT_FOUND = 127  # as a shell says for a missing command
EXIT_NOT_EXECUTABLE = 126


class PingError(Exception):
    """A ping did not reach sentinel or was refused; the message is one line."""


def base_url(listen: str, *, tls: bool = False) -> str:
    """The daemon's address from `[sentinel] listen`; a wildcard address means this machine;
    https with `tls` (its web_config has tls_server_config)."""
    host, port = split_host_port(listen, what="listen")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def ping_suffix(*, start: bool = False, fail: bool = False, exit_code: int | None = None) -> str:
    if start:
        return "/start"
    if fail:
        return "/fail"
    if exit_code is not None:
        return f"/{exit_code}"
    return ""


def send_ping(
    url: str,
    token: bytes | None,
    body: bytes | None = None,
    timeout: float = PING_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> None:
    """GET (or POST `body` to) `url`; raises PingError unless sentinel answers 200."""
    import urllib.error  # here: `sentinel run` builds the same parser and needs neither
    import urllib.request

    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token.decode('ascii')}")
    # No proxies from the environment: the daemon is on this machine.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        detail = exc.read(200).decode("utf-8", "replace").strip() or exc.reason
        raise PingError(f"HTTP {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise PingError(f"{exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise PingError(str(exc) or type(exc).__name__) from None


class Target:
    """Where and how to ping one heartbeat."""

    def __init__(self, config: Config, beat: HeartbeatConfig, token: bytes | None) -> None:
        # With [sentinel] web_config's TLS, over https trusting the certificate the daemon serves.
        self.context: ssl.SSLContext | None = None
        self.context_error: str | None = None
        if config.web_config:
            from sentinel.webauth import WebConfigError, local_client_context

            try:
                self.context = local_client_context(config.web_config)
            except WebConfigError as exc:
                self.context_error = str(exc)
        tls = self.context is not None
        self.url = f"{base_url(config.listen, tls=tls)}/ping/{beat.name}"
        self.token = token

    def ping(self, suffix: str, body: bytes | None = None) -> None:
        if self.context_error is not None:
            raise PingError(self.context_error)
        send_ping(self.url + suffix, self.token, body, context=self.context)


def resolve(config_path: str, name: str) -> Target:
    """The heartbeat `name` of the config file; raises ConfigError / TokenError / LookupError."""
    config = load_config(config_path)
    if not config.listen:
        raise ConfigError([f"{config_path}: [sentinel] listen is off: nowhere to ping"])
    for beat in config.heartbeats:
        if beat.name == name:
            return Target(config, beat, read_token(beat))
    raise LookupError(f"no heartbeat named {name!r} in {config_path}")


def _warn(err: TextIO, text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"sentinel: {text}", file=err, flush=True)


def cmd_ping(
    config_path: str,
    name: str,
    *,
    start: bool,
    fail: bool,
    exit_code: int | None,
    err: TextIO = sys.stderr,
) -> int:
    try:
        target = resolve(config_path, name)
    except ConfigError as exc:
        for line in exc.errors:
            _warn(err, line)
        return EXIT_CONFIG
    except TokenError as exc:
        _warn(err, str(exc))
        return EXIT_CONFIG
    except LookupError as exc:
        _warn(err, str(exc.args[0]))
        return EXIT_USAGE
    suffix = ping_suffix(start=start, fail=fail, exit_code=exit_code)
    try:
        target.ping(suffix)
    except PingError as exc:
        _warn(err, f"ping {name}{suffix} failed: {exc}")
        return EXIT_FAILED
    return EXIT_OK


class _Tail:
    """The last `limit` bytes written."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]


def run_teed(
    command: Sequence[str], tail: _Tail, out: BinaryIO, err: BinaryIO
) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Run `command`, copying its stdout/stderr to `out`/`err` and both into `tail`.
    Returns (exit code, process); a command that cannot start gives 127/126 and no process."""
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        message = f"sentinel: wrap: command not found: {command[0]}\n".encode()
        tail.add(message)
        err.write(message)
        return EXIT_NOT_FOUND, None
    except PermissionError:
        message = f"sentinel: wrap: permission denied: {command[0]}\n".encode()
        tail.add(message)
        err.write(message)
        return EXIT_NOT_EXECUTABLE, None
    # While the command runs, a signal to wrap goes to the command (cron or systemd stopping
    # the job); wrap itself lives on to report how it ended.
    forwarded: dict[signal.Signals, object] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        forwarded[sig] = signal.signal(sig, forward)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ, out)
            selector.register(proc.stderr, selectors.EVENT_READ, err)
            while selector.get_map():
                for key, _ in selector.select():
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    tail.add(chunk)
                    stream: BinaryIO = key.data
                    with contextlib.suppress(OSError, ValueError):
                        stream.write(chunk)
                        stream.flush()
        code = proc.wait()
    finally:
        for signum, handler in forwarded.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
    return (code if code >= 0 else 128 - code), proc


def cmd_wrap(config_path: str, name: str, command: Sequence[str]) -> int:
    """Ping start, run `command`, ping its exit code with its output; exit as it did."""
    err = sys.stderr
    target: Target | None = None
    try:
        target = resolve(config_path, name)
    except ConfigError as exc:
        for line in exc.errors:
            _warn(err, f"{line} (running the command without pings)")
    except (TokenError, LookupError) as exc:
        text = str(exc.args[0]) if isinstance(exc, LookupError) else str(exc)
        _warn(err, f"{text} (running the command without pings)")
    if target is not None:
        try:
            target.ping("/start")
        except PingError as exc:
            _warn(err, f"ping {name}/start failed: {exc}")
    tail = _Tail()
    code, _ = run_teed(command, tail, sys.stdout.buffer, sys.stderr.buffer)
    if target is not None:
        try:
            target.ping(f"/{min(code, 255)}", bytes(tail.data))
        except PingError as exc:
            _warn(err, f"ping {name}/{min(code, 255)} failed: {exc}")
    return code


def add_parsers(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Add `ping` and `wrap` through the CLI's `command(name, summary, description)`."""
    ping = command(
        "ping",
        "ping a heartbeat (success, --start, --fail or --exit N)",
        "Ping a heartbeat of the running daemon (address and token from the config).",
    )
    ping.add_argument("name", help="the heartbeat's name")
    what = ping.add_mutually_exclusive_group()
    what.add_argument("--start", action="store_true", help="the job started")
    what.add_argument("--fail", action="store_true", help="the job failed")
    what.add_argument("--exit", type=int, choices=range(256), metavar="N", help="exit code 0-255")
    wrap = command(
        "wrap",
        "run a command and report it to a heartbeat: wrap NAME -- COMMAND [ARGS]",
        "Ping start, run the command, ping its exit code with the last 10 KiB of "
        "its output, and exit with its exit code (a failed ping never changes it).",
    )
    wrap.add_argument("name", help="the heartbeat's name")
    wrap.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- the command and its arguments"
    )


def run(args: argparse.Namespace, config_path: str) -> int:
    """`sentinel ping` or `sentinel wrap`, parsed by the parsers of `add_parsers`."""
    if args.command == "ping":
        return cmd_ping(
            config_path, args.name, start=args.start, fail=args.fail, exit_code=args.exit
        )
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        _warn(sys.stderr, "wrap: give the command after --: sentinel wrap NAME -- COMMAND")
        return EXIT_USAGE
    return cmd_wrap(config_path, args.name, command)
