"""Tiny real HTTP targets on loopback for end-to-end tests (stdlib, in a thread)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TargetHandler(BaseHTTPRequestHandler):
    server: TargetServer

    def do_GET(self) -> None:
        status = self.server.routes.get(self.path, 404)
        body = f"status {status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class TargetServer(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, int]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def target_server(routes: dict[str, int] | None = None) -> Iterator[TargetServer]:
    """Serves each path with its status; `server.routes` may be changed while it runs."""
    server = TargetServer(("127.0.0.1", 0), TargetHandler)
    server.routes = dict(routes or {"/ok": 200, "/fail": 500})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
