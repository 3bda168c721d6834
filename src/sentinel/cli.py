"""The command line: argument parsing, exit codes and human-readable output. No tracebacks for
user mistakes: every error is one line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sentinel import USER_AGENT, __version__
from sentinel.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    SiteConfig,
    format_duration,
    load_config,
    split_host_port,
)
from sentinel.fatal import report
from sentinel.probes.result import ProbeResult

# README "Exit codes". The unit's RestartPreventExitStatus= lists 69 and 78: restarting cannot fix
# what they report.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the listen address cannot be used
EXIT_CONFIG = 78  # EX_CONFIG: invalid config, unreadable password/credentials, unusable state_dir


def default_config_path(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("SENTINEL_CONFIG") or DEFAULT_CONFIG_PATH


LOG_LEVEL_CHOICES = ["debug", "info", "warning", "error"]
LOG_LEVEL_HELP = "log verbosity (default info: one line per state change or error)"


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` finds it: $COLUMNS, else that of
    the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own, told the terminal's width: left to find it, argparse imports shutil,
    which imports bz2 and lzma (~0.3 MiB that `sentinel run` would keep for nothing)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(
            prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
        )


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `sentinel: ...` line, at err priority under systemd (sentinel.fatal).
    Help laid out by `_HelpFormatter` (its subcommands' parsers are of this class too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        report(f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sentinel",
        description="Uptime alerting: probes sites, emails the owner, exports Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SENTINEL_LOG_LEVEL", "info"),
        choices=LOG_LEVEL_CHOICES,
        help=LOG_LEVEL_HELP + " [$SENTINEL_LOG_LEVEL]",
    )
    # Every subcommand also takes -c and --log-level after its name, and its --help lists them.
    # SUPPRESS: a --log-level given before the subcommand is not overwritten by a default.
    common = _Parser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"config file (default $SENTINEL_CONFIG, else {DEFAULT_CONFIG_PATH})",
    )
    common.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVEL_CHOICES, help=LOG_LEVEL_HELP
    )
    # For the actions of a subcommand (outbox list ...): the same options, but defaults that do
    # not overwrite what was given before the action.
    nested_common = _Parser(add_help=False)
    nested_common.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="config file (as before the action)"
    )
    nested_common.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVEL_CHOICES, help=LOG_LEVEL_HELP
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, parents=[common])

    command(
        "run",
        "run the daemon",
        "Run the daemon: SIGTERM/SIGINT stop it cleanly, SIGHUP reloads the config file.",
    )
    command(
        "check",
        "validate the config file and print a summary",
        "Validate the config file (every error on a line of its own, exit 78) and print a "
        "summary of the sites, intervals and recipients.",
    )
    probe = command(
        "probe",
        "probe sites once and print a table",
        "Probe the configured sites (or the URLs / host:port given) once and print a table.",
    )
    probe.add_argument(
        "--site", action="append", default=[], help="only this configured site (repeatable)"
    )
    probe.add_argument("--timeout", default="10s", help="timeout for URL targets (default 10s)")
    probe.add_argument(
        "--insecure",
        action="store_true",
        help="accept untrusted, expired or mismatched certificates (tls_verify = false)",
    )
    probe.add_argument(
        "targets",
        nargs="*",
        help="https://... or http://... URLs, or host:port for a TCP check (no config needed)",
    )
    command(
        "test-email",
        "send one test email through the SMTP server",
        "Send one test email through the configured SMTP server (exit 1 with the SMTP error).",
    )
    command(
        "status",
        "show every site's live state (from the daemon, else its store)",
        "Show every site's state: asked from the running daemon at `listen`, else read from "
        "the state store it uses (and said so), else where it looked (exit 1).",
    )
    report_parser = command(
        "report",
        "a month's uptime, downtime and incidents per site",
        "A month's uptime, downtime and incidents per site, from the history in the store.",
    )
    report_parser.add_argument("--month", default=None, help="YYYY-MM (UTC; default: this month)")
    report_parser.add_argument("--format", default="text", choices=["text", "csv", "json"])
    from sentinel import cli_silence

    cli_silence.add_parsers(command)
    from sentinel.outbox_cli import add_outbox_parser

    add_outbox_parser(command, nested_common)
    from sentinel.heartbeats import client as heartbeat_cli

    heartbeat_cli.add_parsers(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from sentinel.logsetup import configure_logging

    configure_logging(args.log_level)
    config_path = getattr(args, "config", None) or default_config_path()
    try:
        if args.command == "run":
            return cmd_run(config_path)
        if args.command == "check":
            return cmd_check(config_path, sys.stdout)
        if args.command == "probe":
            return cmd_probe(args, config_path, sys.stdout)
        if args.command == "test-email":
            return cmd_test_email(config_path)
        if args.command == "status":
            return cmd_status(config_path, sys.stdout)
        if args.command in ("silence", "unsilence"):
            from sentinel import cli_silence

            config = _load(config_path)
            return EXIT_CONFIG if config is None else cli_silence.run(args, config, config_path)
        if args.command == "outbox":
            from sentinel.outbox_cli import cmd_outbox

            config = _load(config_path)
            return EXIT_CONFIG if config is None else cmd_outbox(args, config, sys.stdout)
        if args.command in ("ping", "wrap"):
            from sentinel.heartbeats import client as heartbeat_cli

            return heartbeat_cli.run(args, config_path)
        if args.command == "report":
            return cmd_report(args, config_path, sys.stdout)
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _load(config_path: str) -> Config | None:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        report(*exc.errors)
        return None


def cmd_run(config_path: str) -> int:
    # Validated in a child process: the daemon never loads pydantic (sentinel.config_child).
    from sentinel.config_child import load_config_isolated

    try:
        config = load_config_isolated(config_path)
    except ConfigError as exc:
        report(*exc.errors)
        return EXIT_CONFIG
    from sentinel.daemon import run_daemon
    from sentinel.eventloop import EventLoopError, run

    try:
        return run(run_daemon(config_path, config))
    except EventLoopError as exc:
        report(str(exc))
        return EXIT_CONFIG


def cmd_check(config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.operator_env import checked_password, home_python_warning, systemd_run_command

    password_note = None
    if config.email is not None:
        from sentinel.notify.smtp import PasswordError, resolve_password

        try:
            password = resolve_password(config.email, os.environ)
            if not _service_credential_elsewhere(config.email.username, password):
                checked_password(config.email, password, os.environ)
        except PasswordError as exc:
            report(f"{config_path}: email: password: {exc}")
            return EXIT_CONFIG
        if _service_credential_elsewhere(config.email.username, password):
            password_note = (
                "  email password: none found here (the service gets it through LoadCredential=); "
                "try it with: "
                + systemd_run_command(
                    sys.argv[0], sys.executable, ["test-email", "-c", os.path.abspath(config_path)]
                )
            )
    from sentinel.notify.channels import SetupError, build_channels
    from sentinel.notify.smtp import PASSWORD_ENV

    try:
        # Reads secret_file and ca_file, checks apprise URLs. A password only the service can
        # read (the note above) is stood in for, so the rest of the email channel is checked.
        environ = dict(os.environ)
        if password_note is not None:
            environ[PASSWORD_ENV] = "(the service's credential)"
        build_channels(config, environ)
    except SetupError as exc:
        report(f"{config_path}: {exc}")
        return EXIT_CONFIG
    from sentinel.heartbeats.config import TokenError, read_tokens

    try:
        read_tokens(config.heartbeats)
    except TokenError as exc:
        report(f"{config_path}: {exc}")
        return EXIT_CONFIG
    web = ""
    if config.web_config:
        from sentinel.webauth import WebConfigError, load_web_access

        try:
            web = load_web_access(config.web_config).summary()  # reads the files as `run` will
        except WebConfigError as exc:
            report(f"{config_path}: {exc}")
            return EXIT_CONFIG
    print(f"{config_path}: valid", file=out)
    # Part of the summary (stdout), not an error: the config itself is fine.
    warning = home_python_warning(sys.executable, os.path.realpath(sys.executable), os.geteuid())
    if warning is not None:
        print(f"  python: {warning}", file=out)
    print(f"  listen: {config.listen or '(off)'}", file=out)
    if config.web_config:
        print(f"  web_config: {config.web_config} ({web})", file=out)
    print(f"  max_concurrency: {config.max_concurrency}", file=out)
    if config.email is not None:
        e = config.email
        print(
            f"  email: {', '.join(e.recipients)} via {e.smtp_host}:{e.smtp_port} ({e.security})",
            file=out,
        )
        if password_note is not None:
            print(password_note, file=out)
    else:
        print("  email: (not configured: alerts are only logged)", file=out)
    for channel in config.channels:
        # Apprise URLs carry tokens: not on the screen.
        where = (
            f"{len(channel.urls)} URL(s)" if channel.type == "apprise" else ", ".join(channel.urls)
        )
        print(f"  channel: {channel.name} ({channel.type}) {where}", file=out)
    if config.deadman is not None:
        # The ping URL is a secret (anyone holding it can ping): not on the screen.
        every = format_duration(config.deadman.every)
        print(f"  deadman: a ping every {every}", file=out)
    print(f"  sites: {len(config.sites)}", file=out)
    if config.shard is not None:
        owned = len(config.shard.select(s.name for s in config.sites))
        print(f"  shard: {config.shard} (probes {owned} of these sites)", file=out)
    for site in config.sites:
        p = site.policy
        print(
            f"    {site.name:<24} {site.kind:<4} every {format_duration(site.interval):<5} "
            f"timeout {format_duration(site.timeout):<5} down after {p.failure_threshold} "
            f"{site.target}",
            file=out,
        )
    early = config.early
    if early is not None:
        for watch in early.watches:
            print(
                f"  watch: {watch.name} ({watch.describe()}) every "
                f"{format_duration(watch.sample_every)}, window {format_duration(watch.window)}",
                file=out,
            )
        if early.host.disks:
            print(f"  disks: {', '.join(early.host.disks)}", file=out)
        print(f"  self-watch: {'on' if early.self_watch is not None else 'off'}", file=out)
    if config.heartbeats:
        print(f"  heartbeats: {len(config.heartbeats)}", file=out)
        for beat in config.heartbeats:
            token = "token" if beat.token_file else "no token"
            print(
                f"    {beat.name:<24} {beat.describe()}, grace {format_duration(beat.grace)}, "
                f"{token}",
                file=out,
            )
    return EXIT_OK


def _service_credential_elsewhere(username: str, password: str | None) -> bool:
    """A login is configured but this shell has no password: the service may get it from
    systemd (LoadCredential=), which a command typed by hand does not see."""
    return bool(username) and password is None and not os.environ.get("CREDENTIALS_DIRECTORY")


def _adhoc_site(target: str, timeout: float, *, insecure: bool = False) -> SiteConfig:
    if target.startswith(("http://", "https://")):
        return SiteConfig(
            name=target,
            kind="http",
            target=target,
            interval=max(60.0, timeout * 2),
            timeout=timeout,
            tls_verify=not insecure,
        )
    scheme, sep, _ = target.partition("://")
    if sep and scheme != "tcp":
        raise ValueError(f"{target}: unsupported scheme {scheme}:// (use https://, http://)")
    if not sep and ":" not in target:
        # "example.org" or "example.org/path": almost always meant as a web site.
        raise ValueError(
            f"{target}: no scheme and no port: for a web site use https://{target}"
            f"{'' if '/' in target else '/'}, for a TCP check host:port"
        )
    split_host_port(target.removeprefix("tcp://"), what="target")
    return SiteConfig(
        name=target,
        kind="tcp",
        target=target.removeprefix("tcp://"),
        interval=max(60.0, timeout * 2),
        timeout=timeout,
    )


def cmd_probe(args: argparse.Namespace, config_path: str, out: TextIO) -> int:
    from sentinel.config import parse_duration

    sites: list[SiteConfig]
    user_agent = USER_AGENT
    if args.targets:
        try:
            timeout = parse_duration(args.timeout)
            sites = [_adhoc_site(t, timeout, insecure=args.insecure) for t in args.targets]
        except ValueError as exc:
            report(str(exc))
            return EXIT_USAGE
    else:
        config = _load(config_path)
        if config is None:
            return EXIT_CONFIG
        user_agent = config.user_agent
        sites = list(config.sites)
        if args.site:
            known = {s.name for s in sites}
            unknown = [n for n in args.site if n not in known]
            if unknown:
                report(f"no such site: {', '.join(unknown)}")
                return EXIT_USAGE
            sites = [s for s in sites if s.name in args.site]
        if args.insecure:
            sites = [dataclasses.replace(s, tls_verify=False) for s in sites]
    results = asyncio.run(_probe_all(sites, user_agent))
    print(format_probe_table(sites, results), file=out)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


async def _probe_all(sites: Sequence[SiteConfig], user_agent: str) -> list[ProbeResult]:
    from sentinel.probes.prober import Prober

    semaphore = asyncio.Semaphore(50)
    # One-off probes: the kernel's timestamps cost nothing that matters here.
    async with Prober(user_agent=user_agent, precise_latency=True) as prober:

        async def one(site: SiteConfig) -> ProbeResult:
            async with semaphore:
                return await prober.probe(site)

        return list(await asyncio.gather(*(one(s) for s in sites)))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def format_probe_table(sites: Sequence[SiteConfig], results: Sequence[ProbeResult]) -> str:
    header = (
        "site",
        "result",
        "status",
        "total ms",
        "dns",
        "connect",
        "tls",
        "process",
        "transfer",
        "reason",
    )
    rows = [header]
    for site, r in zip(sites, results, strict=True):
        rows.append(
            (
                site.name,
                "up" if r.ok else "FAILED",
                str(r.status or "-"),
                _ms(r.total),
                _ms(r.dns),
                _ms(r.connect),
                _ms(r.tls),
                _ms(r.processing),
                _ms(r.transfer),
                r.reason if r.ok else f"{r.reason}: {r.message}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def cmd_test_email(config_path: str) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    if config.email is None:
        report(f"{config_path}: email: no [email] section to test")
        return EXIT_CONFIG
    from sentinel.notify.errors import SendError
    from sentinel.notify.message import build_test_message
    from sentinel.notify.smtp import PasswordError, SmtpChannel, resolve_password
    from sentinel.operator_env import checked_password, systemd_run_command

    try:
        password = resolve_password(config.email, os.environ)
        if not _service_credential_elsewhere(config.email.username, password):
            password = checked_password(config.email, password, os.environ)
    except PasswordError as exc:
        report(f"{config_path}: email: password: {exc}")
        return EXIT_CONFIG
    if _service_credential_elsewhere(config.email.username, password):
        # Logging in with an empty password would fail and look like a wrong password.
        command = systemd_run_command(
            sys.argv[0], sys.executable, ["test-email", "-c", os.path.abspath(config_path)]
        )
        report(
            f"{config_path}: email: username {config.email.username!r} but no password here "
            "(no password_file, $SENTINEL_SMTP_PASSWORD or $CREDENTIALS_DIRECTORY/smtp-password); "
            f"to send with the service's credential run: {command}"
        )
        return EXIT_CONFIG
    message = build_test_message(email=config.email, now=time.time())
    try:
        asyncio.run(SmtpChannel(config.email, password).send(message))
    except SendError as exc:
        report(f"test email not sent: {exc.detail}")
        return EXIT_FAILED
    print(f"test email sent to {', '.join(config.email.recipients)}")
    return EXIT_OK


def cmd_status(config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.operator_env import StateDirError, choose_state_dir, presence
    from sentinel.status_cli import cmd_status as show_status

    try:
        state_dir: Path | None = choose_state_dir(
            config.state_dir or "", os.environ, presence, config_path=config_path
        )
        missing = None
    except StateDirError as exc:
        state_dir, missing = None, str(exc)
    return show_status(config, state_dir, out, sys.stderr, missing=missing)


def cmd_report(args: argparse.Namespace, config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.history.report import build_report, report_sites, write_report
    from sentinel.operator_env import StateDirError, choose_state_dir, presence
    from sentinel.store import Store, StoreError

    try:
        state_dir = choose_state_dir(
            config.state_dir or "", os.environ, presence, config_path=config_path
        )
        with Store.open_readonly(state_dir) as store:
            label, reports = build_report(store, report_sites(config), args.month, time.time())
    except ValueError as exc:
        report(f"--month: {exc}")
        return EXIT_USAGE
    except (StateDirError, StoreError) as exc:
        report(str(exc))
        return EXIT_FAILED
    shard = None if config.shard is None else str(config.shard)
    write_report(label, reports, args.format, out, shard=shard)
    return EXIT_OK
