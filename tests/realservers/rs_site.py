"""What every real server of the suite serves: the document root, the listeners and their ports.

Each server class (rs_servers.py) turns a `Site` into its own configuration; the cases
(test_realservers.py) only know the listener names and the paths below:

    /index.html        a small page with INDEX_MARK
    /big.txt           BIG_BODY bytes, EARLY_MARK in its first KiB and LATE_MARK at its end
    /text.txt          compressible text, served gzip-encoded, GZIP_MARK at its end
    /chunked.*         a dynamic page (SSI or CGI): no Content-Length, so chunked on HTTP/1.1
                       and close-delimited on the "http10" listener
    /r/N               a redirect to /r/N-1 (N <= REDIRECT_CHAIN_MAX), /r/1 to /index.html
    /moved             301 to /index.html
    /bigheader         200 with one header line of BIG_HEADER bytes
    /manyheaders       200 with MANY_HEADERS extra header fields
    /missing           (nothing: 404)
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from rs_pki import Pki

INDEX_MARK = "sentinel-realserver-index"
EARLY_MARK = "sentinel-marker-early"
LATE_MARK = "sentinel-marker-late"
GZIP_MARK = "sentinel-marker-gzip"
CHUNKED_MARK = "sentinel-marker-chunked"
BIG_BODY = 2 * 1024 * 1024  # twice sentinel's default max_body_bytes
REDIRECT_CHAIN_MAX = 25
BIG_HEADER = 16 * 1024  # bytes of the X-Big value: a header line over 16 KiB
BIG_HEADER_PIECE = 2048  # nginx reads config tokens of at most 4 KiB: built from pieces
MANY_HEADERS = 200


@dataclass(frozen=True, slots=True)
class Listener:
    host: str  # "127.0.0.1" or "::1"
    cert: str | None = None  # a name in Pki.servers: TLS with that certificate
    client_auth: bool = False  # requires a client certificate issued by Pki.client_ca
    http10: bool = False  # answers as HTTP/1.0 where the server can (else close-delimited)


# Every server gets all of these that it can offer (see WebServer.unsupported).
LISTENERS: dict[str, Listener] = {
    "http": Listener("127.0.0.1"),
    "http6": Listener("::1"),
    "http10": Listener("127.0.0.1", http10=True),
    "tls": Listener("127.0.0.1", cert="ok"),
    "tls_expired": Listener("127.0.0.1", cert="expired"),
    "tls_expiring": Listener("127.0.0.1", cert="expiring"),
    "tls_wrong_host": Listener("127.0.0.1", cert="wrong_host"),
    "tls_self_signed": Listener("127.0.0.1", cert="self_signed"),
    "tls_intermediate": Listener("127.0.0.1", cert="intermediate"),
    "tls_client": Listener("127.0.0.1", cert="ok", client_auth=True),
}


@dataclass(frozen=True, slots=True)
class Site:
    root: Path  # the document root
    pki: Pki
    ports: dict[str, int]  # listener name -> port

    def url(self, listener: str, path: str) -> str:
        spec = LISTENERS[listener]
        scheme = "https" if spec.cert else "http"
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        return f"{scheme}://{host}:{self.ports[listener]}{path}"


def big_header_value() -> str:
    return "b" * BIG_HEADER


def many_headers() -> list[tuple[str, str]]:
    return [(f"X-Many-{i:03d}", f"value {i}") for i in range(MANY_HEADERS)]


def write_root(root: Path) -> None:
    """The static files (dynamic pages are each server's own: SSI or CGI)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f"<html><body>{INDEX_MARK}</body></html>\n")
    filler = b"0123456789abcdef" * 64 + b"\n"  # 1025 bytes a line
    head = f"{EARLY_MARK}\n".encode()
    tail = f"\n{LATE_MARK}\n".encode()
    lines = (BIG_BODY - len(head) - len(tail)) // len(filler)
    body = head + filler * lines
    body += b"x" * (BIG_BODY - len(body) - len(tail)) + tail
    assert len(body) == BIG_BODY
    (root / "big.txt").write_bytes(body)
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(4000))
    (root / "text.txt").write_text(text + GZIP_MARK + "\n")
    # The pages the header fields are added to (by each server's configuration).
    (root / "bigheader").write_text("big header\n")
    (root / "manyheaders").write_text("many headers\n")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def free_ports(names: list[str]) -> dict[str, int]:
    """A free port per listener, on its own address (bound, then released: the server binds it
    a moment later; a port taken meanwhile shows as a failed start, which is retried)."""
    ports: dict[str, int] = {}
    held: list[socket.socket] = []
    try:
        for name in names:
            host = LISTENERS[name].host
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.bind((host, 0))
            held.append(sock)
            ports[name] = sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()
    return ports
