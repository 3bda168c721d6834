"""Debian's nginx, apache2, lighttpd and caddy, started on loopback with generated configs.

A server is one small class: where its binary is, what it cannot offer, its configuration for
a `Site` (rs_site.py) and the command that runs it in the foreground. `WebServer` does the
rest: it writes the configuration into the server's own work directory, starts the process in
a session of its own, waits until every listener accepts connections, and stops it by its PID
(TERM, then KILL of its process group). No system configuration is read or written and no
system service is started; as root the workers run as www-data, which is why the files live in
a world-readable directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from rs_site import (
    BIG_HEADER,
    BIG_HEADER_PIECE,
    CHUNKED_MARK,
    LISTENERS,
    REDIRECT_CHAIN_MAX,
    Listener,
    Site,
    many_headers,
)

START_DEADLINE = 60.0  # seconds for every listener to accept connections (a loaded machine)
STOP_DEADLINE = 15.0
RUN_USER = "www-data"  # the workers' user when started as root
APACHE_MODULES = "/usr/lib/apache2/modules"  # Debian's

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH + ":" + os.environ.get("PATH", ""))


def _as_root() -> bool:
    return os.geteuid() == 0


def _redirects() -> list[tuple[str, str]]:
    """(path, target) of the redirect chains: /r/N -> /r/N-1, /r/1 -> /index.html."""
    return [
        (f"/r/{n}", f"/r/{n - 1}" if n > 1 else "/index.html")
        for n in range(1, REDIRECT_CHAIN_MAX + 1)
    ]


class ServerStartError(RuntimeError):
    """The server did not come up; the message ends with its log."""


class WebServer(ABC):
    name: ClassVar[str]
    binary: ClassVar[str]
    package: ClassVar[str]  # the Debian package that has it
    # The page without a Content-Length (SSI or CGI output): chunked on HTTP/1.1.
    dynamic_page: ClassVar[str] = "/chunked.shtml"
    # Listener (or case feature) -> why this server cannot offer it: those cases are skipped.
    unsupported: ClassVar[dict[str, str]] = {}
    # Files it needs besides its binary (modules packaged apart).
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, work: Path, site: Site) -> None:
        self.work = work
        self.site = site
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / "server.log"
        # What this instance cannot offer here: its class's limits, and the machine's.
        self.unavailable: dict[str, str] = dict(self.unsupported)

    @classmethod
    def absent(cls) -> str | None:
        """What of this server is not installed here, or None."""
        if find_binary(cls.binary) is None:
            return cls.binary
        for path in cls.requires:
            if not Path(path).exists():
                return path
        return None

    def listeners(self) -> list[tuple[str, Listener, int]]:
        return [(name, LISTENERS[name], port) for name, port in self.site.ports.items()]

    @abstractmethod
    def configure(self) -> list[str]:
        """Write the configuration (and any dynamic pages) into `work`; the command to run."""

    def environment(self) -> dict[str, str]:
        return {"PATH": SBIN_PATH, "HOME": str(self.work), "LANG": "C.UTF-8"}

    def start(self) -> None:
        command = self.configure()
        make_readable(self.site.root.parent)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work,
                env=self.environment(),
                start_new_session=True,  # its workers share its process group: stop() ends all
            )
        deadline = time.monotonic() + START_DEADLINE
        waiting = self.listeners()
        while waiting:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                names = ", ".join(name for name, _, _ in waiting)
                raise ServerStartError(f"{self.name}: {names} not listening: {self.log_tail()}")
            waiting = [item for item in waiting if not _accepts(item[1].host, item[2])]
            if waiting:
                time.sleep(0.05)  # polling a port: there is no event to wait for

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # each stops its own workers first
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so its process group is still the one started above: end it all.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text[-limit:].splitlines())


def make_readable(top: Path) -> None:
    """As root the workers run as www-data: all they serve or load must be world-readable
    (`top` is a fresh directory of this run: nothing else is in it)."""
    top.chmod(0o755)
    for path in top.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _accepts(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((host, port))
        except OSError:
            return False
    return True


def _listen_address(listener: Listener, port: int) -> str:
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"{host}:{port}"


# ------------------------------------------------------------------ nginx


class Nginx(WebServer):
    name = "nginx"
    binary = "nginx"
    package = "nginx"
    unsupported: ClassVar[dict[str, str]] = {
        "http10-status": "nginx answers an HTTP/1.1 request in HTTP/1.1 (its http10 listener "
        "sends close-delimited bodies: chunked_transfer_encoding off)",
    }

    def configure(self) -> list[str]:
        root = self.site.root
        pki = self.site.pki
        (root / "chunked.shtml").write_text(
            f'<html><body>{CHUNKED_MARK} <!--# echo var="request_method" --></body></html>\n'
        )
        pieces = BIG_HEADER // BIG_HEADER_PIECE
        routes = [
            "location = / { index index.html; }",
            "location = /chunked.shtml { ssi on; ssi_types text/html; }",
            "location = /text.txt { gzip on; gzip_types text/plain; gzip_min_length 1; }",
            "location = /moved { return 301 /index.html; }",
            f'location = /bigheader {{ set $p "{"b" * BIG_HEADER_PIECE}"; '
            f'add_header X-Big {"$p" * pieces}; return 200 "big header\\n"; }}',
            "location = /manyheaders { "
            + " ".join(f'add_header {name} "{value}";' for name, value in many_headers())
            + ' return 200 "many headers\\n"; }',
        ]
        routes += [f"location = {path} {{ return 302 {target}; }}" for path, target in _redirects()]
        servers = []
        for _name, listener, port in self.listeners():
            lines = [f"listen {_listen_address(listener, port)}{' ssl' if listener.cert else ''};"]
            lines.append(f"root {root};")
            if listener.cert:
                cert = pki.servers[listener.cert]
                lines += [f"ssl_certificate {cert.chain};", f"ssl_certificate_key {cert.key};"]
            if listener.client_auth:
                lines += [f"ssl_client_certificate {pki.client_ca};", "ssl_verify_client on;"]
            if listener.http10:
                lines.append("chunked_transfer_encoding off;")
            lines += routes
            servers.append("server {\n    " + "\n    ".join(lines) + "\n}")
        temp = self.work / "temp"
        temp.mkdir(exist_ok=True)
        conf = "\n".join(
            [
                "daemon off;",
                "master_process on;",
                "worker_processes 1;",
                f"pid {self.work}/nginx.pid;",
                f"error_log {self.log} warn;",
                f"user {RUN_USER};" if _as_root() else "",
                "events { worker_connections 256; }",
                "http {",
                "types { text/html html shtml; text/plain txt; }",
                "default_type application/octet-stream;",
                "access_log off;",
                *(
                    f"{kind}_temp_path {temp}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                ),
                *servers,
                "}",
            ]
        )
        path = self.work / "nginx.conf"
        path.write_text(conf + "\n")
        return [self.binary_path(), "-p", str(self.work), "-c", str(path), "-e", str(self.log)]

    def binary_path(self) -> str:
        return find_binary(self.binary) or self.binary


# ------------------------------------------------------------------ apache2


class Apache(WebServer):
    name = "apache2"
    binary = "apache2"
    package = "apache2"
    requires = (f"{APACHE_MODULES}/mod_ssl.so",)

    def configure(self) -> list[str]:
        root = self.site.root
        pki = self.site.pki
        (root / "chunked.shtml").write_text(
            f'<html><body>{CHUNKED_MARK} <!--#echo var="REQUEST_METHOD" --></body></html>\n'
        )
        modules = ["mpm_event", "authz_core", "mime", "dir", "alias", "headers", "filter"]
        modules += ["deflate", "include", "setenvif", "ssl"]
        big = "b" * BIG_HEADER_PIECE
        routes = [
            f"DocumentRoot {root}",
            f"<Directory {root}>",
            "    Require all granted",
            "    Options +Includes",
            "</Directory>",
            "DirectoryIndex index.html",
            '<Files "chunked.shtml">',
            "    SetOutputFilter INCLUDES",
            "</Files>",
            '<Files "text.txt">',
            "    SetOutputFilter DEFLATE",
            "</Files>",
            '<Files "bigheader">',
            f'    Header set X-Big "{big}"',
            # `append` joins with ", ": one line of BIG_HEADER bytes and the separators.
            *(f'    Header append X-Big "{big}"' for _ in range(BIG_HEADER // len(big) - 1)),
            "</Files>",
            '<Files "manyheaders">',
            *(f'    Header set {name} "{value}"' for name, value in many_headers()),
            "</Files>",
            "Redirect 301 /moved /index.html",
            *(f"RedirectMatch 302 ^{path}$ {target}" for path, target in _redirects()),
        ]
        lines = [
            f"ServerRoot {self.work}",
            f"PidFile {self.work}/apache2.pid",
            f"DefaultRuntimeDir {self.work}",
            f"ErrorLog {self.log}",
            "LogLevel warn",
            "ServerName localhost",
            "Mutex posixsem",
            "StartServers 1",
            "ServerLimit 2",
            "ThreadsPerChild 16",
            "MaxRequestWorkers 32",
            *(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in modules),
            "TypesConfig /dev/null",
            "AddType text/html .html .shtml",
            "AddType text/plain .txt",
        ]
        if _as_root():
            lines += [f"User {RUN_USER}", f"Group {RUN_USER}"]
        for _name, listener, port in self.listeners():
            address = _listen_address(listener, port)
            lines.append(f"Listen {address}")
            lines.append(f"<VirtualHost {address}>")
            body = ["ServerName localhost", *routes]
            if listener.cert:
                cert = pki.servers[listener.cert]
                body += [
                    "SSLEngine on",
                    f"SSLCertificateFile {cert.chain}",
                    f"SSLCertificateKeyFile {cert.key}",
                ]
            if listener.client_auth:
                body += [f"SSLCACertificateFile {pki.client_ca}", "SSLVerifyClient require"]
            if listener.http10:
                # As for old clients: treat the request as HTTP/1.0 and answer HTTP/1.0.
                body += ["SetEnvIf Request_URI . downgrade-1.0 force-response-1.0"]
            lines += ["    " + line for line in body]
            lines.append("</VirtualHost>")
        path = self.work / "apache2.conf"
        path.write_text("\n".join(lines) + "\n")
        return [find_binary(self.binary) or self.binary, "-f", str(path), "-DFOREGROUND"]


# ------------------------------------------------------------------ lighttpd


class Lighttpd(WebServer):
    name = "lighttpd"
    binary = "lighttpd"
    package = "lighttpd lighttpd-mod-openssl lighttpd-mod-deflate"
    requires = ("/usr/lib/lighttpd/mod_openssl.so", "/usr/lib/lighttpd/mod_deflate.so")
    dynamic_page = "/chunked.sh"

    def configure(self) -> list[str]:
        root = self.site.root
        pki = self.site.pki
        script = root / "chunked.sh"
        # A CGI that gives no Content-Length: chunked on HTTP/1.1, close-delimited on 1.0.
        script.write_text(
            "printf 'Content-Type: text/html\\r\\n\\r\\n'\n"
            f"printf '<html><body>{CHUNKED_MARK} %s</body></html>\\n' \"$REQUEST_METHOD\"\n"
            # Enough output that lighttpd streams it rather than buffering all of it.
            "i=0; while [ $i -lt 2000 ]; do echo 'streamed line of filler text'; i=$((i+1)); done\n"
        )
        listeners = self.listeners()
        first_name, first, first_port = listeners[0]
        assert not first.cert
        redirects = ", ".join(f'"^{path}$" => "{target}"' for path, target in _redirects())
        many = ", ".join(f'"{name}" => "{value}"' for name, value in many_headers())
        lines = [
            'server.modules = ("mod_openssl", "mod_deflate", "mod_redirect", "mod_setenv",'
            ' "mod_cgi")',
            f'server.document-root = "{root}"',
            f'server.bind = "{first.host}"',
            f"server.port = {first_port}",
            f'server.pid-file = "{self.work}/lighttpd.pid"',
            # No server.errorlog: it would be opened after the switch to www-data. Its
            # stderr is the log file, opened here.
            'index-file.names = ("index.html")',
            'mimetype.assign = (".html" => "text/html", ".txt" => "text/plain")',
            'cgi.assign = (".sh" => "/bin/sh")',
            "server.stream-response-body = 2",
            f"url.redirect = ({redirects})",
            "url.redirect-code = 302",
            '$HTTP["url"] == "/moved" {',
            '    url.redirect = ("" => "/index.html")',
            "    url.redirect-code = 301",
            "}",
            '$HTTP["url"] == "/text.txt" {',
            '    deflate.mimetypes = ("text/plain")',
            '    deflate.allowed-encodings = ("gzip")',
            "}",
            '$HTTP["url"] == "/bigheader" {',
            f'    setenv.add-response-header = ("X-Big" => "{"b" * BIG_HEADER}")',
            "}",
            '$HTTP["url"] == "/manyheaders" {',
            f"    setenv.add-response-header = ({many})",
            "}",
        ]
        if _as_root():
            lines += [f'server.username = "{RUN_USER}"', f'server.groupname = "{RUN_USER}"']
        for _name, listener, port in listeners[1:]:
            body: list[str] = []
            if listener.cert:
                cert = pki.servers[listener.cert]
                body += [
                    'ssl.engine = "enable"',
                    f'ssl.pemfile = "{cert.chain}"',
                    f'ssl.privkey = "{cert.key}"',
                ]
            if listener.client_auth:
                # lighttpd builds the server's own chain from the client CA store: it must hold
                # the server's root too, or every handshake fails.
                both = self.work / "lighttpd-client-cas.pem"
                both.write_bytes(pki.client_ca.read_bytes() + pki.ca.read_bytes())
                body += [
                    f'ssl.verifyclient.ca-file = "{both}"',
                    'ssl.verifyclient.activate = "enable"',
                    'ssl.verifyclient.enforce = "enable"',
                ]
            if listener.http10:
                body.append('server.protocol-http11 = "disable"')
            lines.append(f'$SERVER["socket"] == "{_listen_address(listener, port)}" {{')
            lines += ["    " + line for line in body]
            lines.append("}")
        del first_name
        path = self.work / "lighttpd.conf"
        path.write_text("\n".join(lines) + "\n")
        return [find_binary(self.binary) or self.binary, "-D", "-f", str(path)]


# ------------------------------------------------------------------ caddy


class Caddy(WebServer):
    name = "caddy"
    binary = "caddy"
    package = "caddy"
    dynamic_page = "/chunked.html"
    unsupported: ClassVar[dict[str, str]] = {
        "http10": "Caddy answers HTTP/1.1 requests in HTTP/1.1 only, never close-delimited",
        "http10-status": "Caddy answers HTTP/1.1 requests in HTTP/1.1 only",
        "chunked": "Caddy buffers its templates (Content-Length); its gzip responses are chunked",
    }

    def environment(self) -> dict[str, str]:
        # Its data and config directories (autosave, storage) stay inside the work directory.
        env = super().environment()
        env["XDG_DATA_HOME"] = str(self.work / "data")
        env["XDG_CONFIG_HOME"] = str(self.work / "config")
        return env

    def configure(self) -> list[str]:
        root = self.site.root
        pki = self.site.pki
        (root / "chunked.html").write_text(
            f"<html><body>{CHUNKED_MARK} {{{{.Req.Method}}}}</body></html>\n"
        )
        many = "\n".join(f'\t\t{name} "{value}"' for name, value in many_headers())
        lines = [
            "{",
            "\tadmin off",
            # With client_auth, Caddy answers 421 when the Host differs from the SNI, and an IP
            # URL sends no SNI at all.
            "\tservers {",
            "\t\tstrict_sni_host insecure_off",
            "\t}",
            "\tskip_install_trust",
            f"\tstorage file_system {self.work}/storage",
            "}",
            "(routes) {",
            f"\troot * {root}",
            "\t@gz path /text.txt",
            "\tencode @gz gzip",
            "\ttemplates /chunked.html",
            "\tredir /moved /index.html 301",
            *(f"\tredir {path} {target} 302" for path, target in _redirects()),
            f'\theader /bigheader X-Big "{"b" * BIG_HEADER}"',
            "\theader /manyheaders {",
            many,
            "\t}",
            "\tfile_server",
            "}",
        ]
        for _name, listener, port in self.listeners():
            scheme = "https" if listener.cert else "http"
            lines.append(f"{scheme}://:{port} {{")
            lines.append(f"\tbind {listener.host}")
            if listener.cert:
                cert = pki.servers[listener.cert]
                lines.append(f"\ttls {cert.chain} {cert.key} {{")
                if listener.client_auth:
                    lines += [
                        "\t\tclient_auth {",
                        "\t\t\tmode require_and_verify",
                        f"\t\t\ttrusted_ca_cert_file {pki.client_ca}",
                        "\t\t}",
                    ]
                lines.append("\t}")
            lines += ["\timport routes", "}"]
        path = self.work / "Caddyfile"
        path.write_text("\n".join(lines) + "\n")
        binary = find_binary(self.binary) or self.binary
        return [binary, "run", "--config", str(path), "--adapter", "caddyfile"]


SERVERS: tuple[type[WebServer], ...] = (Nginx, Apache, Lighttpd, Caddy)
