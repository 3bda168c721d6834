"""The command line: argument parsing, exit codes and human-readable output. No tracebacks for
user mistakes: every error is one line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from sentinel import __version__
from sentinel.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    SiteConfig,
    format_duration,
    load_config,
    split_host_port,
)
from sentinel.probes.result import ProbeResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


def default_config_path(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("SENTINEL_CONFIG") or DEFAULT_CONFIG_PATH


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel",
        description="Uptime alerting: probes sites, emails the owner, exports Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SENTINEL_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default info: one line per state change or error)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c",
            "--config",
            default=None,
            help=f"config file (default $SENTINEL_CONFIG, else {DEFAULT_CONFIG_PATH})",
        )

    with_config(sub.add_parser("run", help="run the daemon"))
    with_config(sub.add_parser("check", help="validate the config file and print a summary"))
    probe = sub.add_parser("probe", help="probe sites once and print a table")
    with_config(probe)
    probe.add_argument("--site", action="append", default=[], help="only this site (repeatable)")
    probe.add_argument("--timeout", default="10s", help="timeout for URL targets (default 10s)")
    probe.add_argument("targets", nargs="*", help="URLs or host:port to probe without a config")
    with_config(sub.add_parser("test-email", help="send one test email through the SMTP server"))
    with_config(
        sub.add_parser(
            "status", help="show every site's live state (from the daemon, else its store)"
        )
    )
    report = sub.add_parser("report", help="a month's uptime, downtime and incidents per site")
    with_config(report)
    report.add_argument("--month", default=None, help="YYYY-MM (UTC; default: this month)")
    report.add_argument("--format", default="text", choices=["text", "csv", "json"])
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
        for line in exc.errors:
            print(f"sentinel: {line}", file=sys.stderr)
        return None


def cmd_run(config_path: str) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.daemon import run_daemon
    from sentinel.eventloop import EventLoopError, run

    try:
        return run(run_daemon(config_path, config))
    except EventLoopError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_check(config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    if config.email is not None:
        from sentinel.notify.smtp import PasswordError, resolve_password

        try:
            resolve_password(config.email, os.environ)
        except PasswordError as exc:
            print(f"sentinel: {config_path}: email: password: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    print(f"{config_path}: valid", file=out)
    print(f"  listen: {config.listen or '(off)'}", file=out)
    print(f"  max_concurrency: {config.max_concurrency}", file=out)
    if config.email is not None:
        e = config.email
        print(
            f"  email: {', '.join(e.recipients)} via {e.smtp_host}:{e.smtp_port} ({e.security})",
            file=out,
        )
    else:
        print("  email: (not configured: alerts are only logged)", file=out)
    print(f"  sites: {len(config.sites)}", file=out)
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
    return EXIT_OK


def _adhoc_site(target: str, timeout: float) -> SiteConfig:
    if target.startswith(("http://", "https://")):
        return SiteConfig(
            name=target,
            kind="http",
            target=target,
            interval=max(60.0, timeout * 2),
            timeout=timeout,
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
    user_agent = "sentinel-uptime/" + __version__
    if args.targets:
        try:
            timeout = parse_duration(args.timeout)
            sites = [_adhoc_site(t, timeout) for t in args.targets]
        except ValueError as exc:
            print(f"sentinel: {exc}", file=sys.stderr)
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
                print(f"sentinel: no such site: {', '.join(unknown)}", file=sys.stderr)
                return EXIT_USAGE
            sites = [s for s in sites if s.name in args.site]
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
        print(f"sentinel: {config_path}: email: no [email] section to test", file=sys.stderr)
        return EXIT_CONFIG
    from sentinel.notify.errors import SendError
    from sentinel.notify.message import build_test_message
    from sentinel.notify.smtp import PasswordError, SmtpChannel, resolve_password

    try:
        password = resolve_password(config.email, os.environ)
    except PasswordError as exc:
        print(f"sentinel: {config_path}: email: password: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    message = build_test_message(email=config.email, now=time.time())
    try:
        asyncio.run(SmtpChannel(config.email, password).send(message))
    except SendError as exc:
        print(f"sentinel: test email not sent: {exc.detail}", file=sys.stderr)
        return EXIT_FAILED
    print(f"test email sent to {', '.join(config.email.recipients)}")
    return EXIT_OK


def cmd_status(config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.daemon import resolve_state_dir
    from sentinel.status_cli import cmd_status as show_status

    return show_status(config, resolve_state_dir(config), out, sys.stderr)


def cmd_report(args: argparse.Namespace, config_path: str, out: TextIO) -> int:
    config = _load(config_path)
    if config is None:
        return EXIT_CONFIG
    from sentinel.daemon import resolve_state_dir
    from sentinel.history.report import build_report, write_report
    from sentinel.store import Store, StoreError

    try:
        with Store.open_readonly(resolve_state_dir(config)) as store:
            label, reports = build_report(
                store, [s.name for s in config.sites], args.month, time.time()
            )
    except ValueError as exc:
        print(f"sentinel: --month: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    write_report(label, reports, args.format, out)
    return EXIT_OK
