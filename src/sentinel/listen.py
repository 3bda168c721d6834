"""The `listen` address as an operator meets it: the status page's URL for the start-up log line,
and the one-line error (with what to do) when the address cannot be used. Pure functions."""

from __future__ import annotations

import errno
import ipaddress

from sentinel.config import split_host_port

__all__ = ["ListenError", "listen_error", "status_page_url"]


class ListenError(Exception):
    """The HTTP server cannot listen on the configured address; the message is one line."""


def _host_for_url(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        # Every interface: the loopback address works from this machine.
        return "127.0.0.1" if host != "::" else "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a host name
    return host


def status_page_url(listen: str, port: int, *, tls: bool = False) -> str:
    """http://HOST:PORT/ (https:// with `tls`: web_config) for `listen` ("host:port") bound to
    `port` (IPv6 in brackets; a wildcard address as loopback)."""
    host, _ = split_host_port(listen, what="listen")
    return f"{'https' if tls else 'http'}://{_host_for_url(host)}:{port}/"


def listen_error(listen: str, exc: OSError) -> ListenError:
    """`listen 127.0.0.1:9798: address already in use: ...what to do` from the bind error."""
    where = f"listen {listen}"
    _, port = split_host_port(listen, what="listen")
    if exc.errno == errno.EADDRINUSE:
        what = (
            "address already in use: another program (or another sentinel) listens there; "
            f"stop it (see `ss -ltnp 'sport = :{port}'`) or set [sentinel] listen to a free port"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        what = (
            "address not available: no interface of this machine has it; "
            "set [sentinel] listen to one of its addresses (or 127.0.0.1)"
        )
    elif exc.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied: ports below 1024 need privileges; use a port above 1024"
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
        what = f"cannot listen ({reason}); check [sentinel] listen"
    return ListenError(f"{where}: {what}")
