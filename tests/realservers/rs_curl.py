"""curl as the reference client: the same site probed by curl, its outcome as a sentinel verdict.

`curl_probe` builds curl's command line from the very `SiteConfig` sentinel probes (plus the
site keys that `SiteConfig` may not have yet: ca_file, client_cert, client_key, connect_to,
max_redirects) and maps curl's exit code and status to sentinel's reason codes:

    exit 0          status accepted -> ok, else status; then body_contains -> body
    6               dns             7          connect_refused (loopback: nothing listening)
    28              timeout         47         redirects (over --max-redirs)
    35 58 59 60 ... tls (handshake, local certificate, verification)
    56              tls when the error is a TLS alert (a client certificate required), else
                    connect_reset (the server hung up)
    52              connect_reset (no response at all)
    1 8 18 61 ...   protocol (malformed or cut-off response)

The `Verdict` of either side has a status only when the status is what is judged (ok, status,
body); a failure before a final response has status 0 on both sides.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sentinel.config import SiteConfig
from sentinel.probes.result import ProbeResult

DEFAULT_MAX_REDIRECTS = 20  # sentinel's documented default (issue 12), curl's own is 50
TLS_EXITS = frozenset((35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91))
PROTOCOL_EXITS = frozenset((1, 8, 16, 18, 61, 92, 100))


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str
    status: int = 0

    def __str__(self) -> str:
        return f"{self.reason} (HTTP {self.status})" if self.status else self.reason


@dataclass(frozen=True, slots=True)
class CurlRun:
    verdict: Verdict
    exit_code: int
    error: str
    http_version: str  # of the last response: "1", "1.1"
    headers: list[tuple[str, str]]  # of the last response, names lower-cased
    body: bytes
    cert_expiries: list[float] = field(default_factory=list)  # NotAfter of each served cert

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def verdict_of(result: ProbeResult) -> Verdict:
    judged = result.ok or result.reason in ("status", "body")
    return Verdict(result.ok, result.reason, result.status if judged else 0)


def curl_binary() -> str | None:
    return shutil.which("curl")


def curl_probe(
    site: SiteConfig,
    *,
    options: Mapping[str, object],
    ca_file: Path,
    user_agent: str,
) -> CurlRun:
    """Run curl once against `site`. `options` are the case's site keys (for those curl needs
    that `SiteConfig` may not carry); `ca_file` is trusted unless options name another."""
    with tempfile.TemporaryDirectory(prefix="sentinel-curl-") as tmp:
        body_path, head_path = Path(tmp) / "body", Path(tmp) / "head"
        command = [
            curl_binary() or "curl",
            "--silent",
            "--show-error",
            "--http1.1",  # sentinel speaks HTTP/1.1 only (no ALPN h2)
            "--compressed",
            "--header",
            "Accept-Encoding: gzip, deflate",  # what sentinel sends
            "--user-agent",
            user_agent,
            "--max-time",
            f"{site.timeout:g}",
            "--output",
            str(body_path),
            "--dump-header",
            str(head_path),
            "--write-out",
            "%{json}",
            "--cacert",
            str(options.get("ca_file", ca_file)),
        ]
        if site.method == "HEAD":
            command.append("--head")
        elif site.method != "GET":
            command += ["--request", site.method]
        if site.follow_redirects:
            max_redirects = options.get("max_redirects", DEFAULT_MAX_REDIRECTS)
            command += ["--location", "--max-redirs", str(max_redirects)]
        if not site.tls_verify:
            command.append("--insecure")
        if "client_cert" in options:
            command += ["--cert", str(options["client_cert"])]
        if "client_key" in options:
            command += ["--key", str(options["client_key"])]
        if "connect_to" in options:
            command += ["--connect-to", connect_to(site.target, str(options["connect_to"]))]
        for name, value in site.headers:
            command += ["--header", f"{name}: {value}"]
        command.append(site.target)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=site.timeout + 30, check=False
        )
        info = json.loads(done.stdout or "{}")
        body = body_path.read_bytes() if body_path.exists() else b""
        heads = head_path.read_text("latin-1") if head_path.exists() else ""
    headers = last_head(heads)
    code = done.returncode
    error = (info.get("errormsg") or done.stderr or "").strip()
    status = int(info.get("http_code") or 0)
    return CurlRun(
        verdict=curl_verdict(site, code, error, status, body, headers),
        exit_code=code,
        error=error,
        http_version=str(info.get("http_version") or ""),
        headers=headers,
        body=body,
        cert_expiries=expiries(str(info.get("certs") or "")),
    )


def curl_verdict(
    site: SiteConfig,
    code: int,
    error: str,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]],
) -> Verdict:
    if code == 0:
        if not site.accepts_status(status):
            return Verdict(False, "status", status)
        if site.body_contains is not None:
            text = body.decode(_charset(headers) or "utf-8", errors="replace")
            if site.body_contains not in text:
                return Verdict(False, "body", status)
        return Verdict(True, "ok", status)
    if code == 6:
        return Verdict(False, "dns")
    if code == 7:
        return Verdict(False, "connect_refused")
    if code == 28:
        return Verdict(False, "timeout")
    if code == 47:
        return Verdict(False, "redirects")
    if code in TLS_EXITS:
        return Verdict(False, "tls")
    if code == 56:
        tls_alert = "alert" in error.lower()
        return Verdict(False, "tls" if tls_alert else "connect_reset")
    if code == 52:
        return Verdict(False, "connect_reset")
    if code in PROTOCOL_EXITS:
        return Verdict(False, "protocol")
    return Verdict(False, f"curl exit {code}")


def connect_to(url: str, target: str) -> str:
    """sentinel's connect_to = "ADDRESS[:PORT]" for `url` -> curl's HOST:PORT:ADDRESS:PORT."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if target.startswith("["):  # [v6] or [v6]:port
        address, _, rest = target[1:].partition("]")
        address, to_port = f"[{address}]", rest.removeprefix(":")
    elif target.count(":") == 1:
        address, _, to_port = target.partition(":")
    else:
        address, to_port = target, ""
    return f"{parts.hostname}:{port}:{address}:{to_port}"


def last_head(text: str) -> list[tuple[str, str]]:
    """The header fields of the last response in a --dump-header file (one head per hop)."""
    blocks = [block for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    if not blocks:
        return []
    fields: list[tuple[str, str]] = []
    for line in blocks[-1].split("\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            fields.append((name.strip().lower(), value.strip()))
    return fields


def _charset(headers: list[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name == "content-type" and "charset=" in value.lower():
            charset = value.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'")
            try:
                "".encode(charset)
            except LookupError:
                return None
            return charset
    return None


def expiries(certs: str) -> list[float]:
    """NotAfter of every certificate in curl's %{certs} ("Expire date:Mar  1 20:24:36 2027
    GMT"), in the order served."""
    found = []
    for line in certs.splitlines():
        if line.startswith("Expire date:"):
            found.append(float(ssl.cert_time_to_seconds(line.removeprefix("Expire date:"))))
    return found
