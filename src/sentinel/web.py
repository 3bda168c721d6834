"""The HTTP server: /metrics for Prometheus, /healthz for supervisors, /api/status and / for people.

A thin shell: it renders what the daemon hands it and owns no state of its own.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sentinel.config import split_host_port
from sentinel.metrics import CONTENT_TYPE

StatusProvider = Callable[[], Sequence[Mapping[str, Any]]]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_app(
    *,
    render_metrics: Callable[[], Iterable[bytes]],
    site_status: StatusProvider,
    healthy: Callable[[], bool],
) -> web.Application:
    async def metrics(request: web.Request) -> web.StreamResponse:
        # Streamed in pieces of a few hundred sites (~25 us a site), handing the loop back between
        # them: probes keep their schedule during a scrape of tens of thousands of sites, and the
        # whole text is never held in memory at once.
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in render_metrics():
            await response.write(chunk)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def healthz(_: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="scheduler not running\n")

    async def api_status(_: web.Request) -> web.Response:
        sites = [dict(s) for s in site_status()]
        body = {"generated_at": _iso(time.time()), "sites": sites}
        # json.dumps escapes control characters, so hostile remote text cannot break the JSON.
        return web.Response(
            text=json.dumps(body, ensure_ascii=False, indent=1), content_type="application/json"
        )

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=render_status_page(site_status()), content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/", index)
    return app


def render_status_page(sites: Sequence[Mapping[str, Any]]) -> str:
    down = sum(1 for s in sites if s.get("status") == "down")
    rows = []
    for s in sorted(sites, key=lambda s: (s.get("status") != "down", str(s.get("site")))):
        status = str(s.get("status", "unknown"))
        last = s.get("last") or {}
        latency = last.get("total")
        rows.append(
            "<tr class='{cls}'><td>{site}</td><td>{status}</td><td>{since}</td>"
            "<td>{latency}</td><td>{reason}</td></tr>".format(
                cls=html.escape(status),
                site=html.escape(str(s.get("site"))),
                status=html.escape(status.upper()),
                since=html.escape(str(s.get("since") or "")),
                latency="" if latency is None else f"{latency * 1000:.0f} ms",
                reason=html.escape(str(last.get("message") or "")),
            )
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sentinel</title>"
        "<meta http-equiv='refresh' content='30'>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}"
        "table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd}"
        ".down td{background:#fdd}.up td:nth-child(2){color:#070}</style></head><body>"
        f"<h1>sentinel</h1><p>{len(sites)} sites, {down} down</p>"
        "<table><tr><th>site</th><th>status</th><th>since</th><th>last latency</th>"
        "<th>last result</th></tr>" + "".join(rows) + "</table></body></html>"
    )


async def start_server(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    """Serve `app` on listen ("host:port"); returns the runner and the bound port (for port 0)."""
    host, port = split_host_port(listen, what="listen")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
