"""`[sentinel] web_config`: TLS and basic auth for sentinel's own HTTP server, in the web config
format that Prometheus exporters share (prometheus/exporter-toolkit, docs/web-configuration.md):

    tls_server_config:
      cert_file: server.crt          # relative paths: to the web config file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: clients.pem
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

What sentinel supports of the format is checked strictly: a key it does not know or does not
implement (inline `cert`/`key`, `cipher_suites`, `rate_limit`, ...) is an error, never ignored,
because a security setting silently dropped is worse than a refused start. Errors are one line
(`WebConfigError`), at start and at reload (which then keeps the running web config).

`parse_web_config` is pure (text in, settings out); `load_web_access` reads the files and builds
the `ssl.SSLContext`. `BasicAuth` checks an `Authorization` header: bcrypt is deliberately slow
(~70 ms at cost 10), so checks run in a thread, one at a time, and their outcome is cached for
CACHE_SECONDS in a cache of at most CACHE_SIZE entries keyed by a SHA-256 of user, hash and
password (no password is kept in memory).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "OPEN_PATHS",
    "BasicAuth",
    "CheckCache",
    "TLSSettings",
    "WebAccess",
    "WebConfigError",
    "WebSettings",
    "basic_credentials",
    "is_open_path",
    "load_web_access",
    "parse_web_config",
]

CACHE_SECONDS: Final = 60.0  # how long a checked (user, password) pair is trusted
CACHE_SIZE: Final = 64  # pairs remembered at most; the oldest goes first
# Paths that need no password: /healthz for a peer sentinel or a load balancer (it tells only
# "the scheduler runs"), and the heartbeat pings, which carry their own per-name tokens.
OPEN_PATHS: Final = ("/healthz",)
OPEN_PREFIXES: Final = ("/ping/",)
# Compared against when the user is unknown, so that an unknown user takes as long as a wrong
# password (exporter-toolkit uses the same: a bcrypt hash of "fakepassword").
_DUMMY_HASH: Final = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
_BCRYPT_RE: Final = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit's allowed extra response headers and, where it restricts them, their values.
_HEADERS: Final[Mapping[str, tuple[str, ...]]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_UNSUPPORTED: Final = {
    "cert": "inline certificates are not supported by sentinel; use cert_file",
    "key": "inline keys are not supported by sentinel; use key_file",
    "cipher_suites": "not supported by sentinel (Go cipher names); OpenSSL's defaults apply",
    "curve_preferences": "not supported by sentinel (Go curve names); OpenSSL's defaults apply",
}


class WebConfigError(Exception):
    """The web config cannot be used; the message is one line naming the file and the key."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    cert_file: str
    key_file: str
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: str | None = None
    client_ca: str | None = None  # inline PEM
    client_allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What a web config file asks for (no file read yet)."""

    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: must be a mapping")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{where}: must be a non-empty string")
    return value


def _path(value: Any, where: str, base_dir: str) -> str:
    return os.path.join(base_dir, _string(value, where))  # an absolute path stays as it is


def _choice(raw: Mapping[str, Any], key: str, choices: Mapping[str, Any], default: str) -> str:
    """The value of `key` (a string naming one of `choices`; `default` when unset)."""
    value = raw.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in choices:
        raise WebConfigError(
            f"tls_server_config.{key}: {value!r} is not one of {', '.join(choices)}"
        )
    return value


def _unknown(section: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in section:
        if key not in known:
            raise WebConfigError(f"{where}.{key}: unknown key")


def _parse_tls(raw: dict[str, Any], base_dir: str) -> TLSSettings | None:
    where = "tls_server_config"
    for key, why in _UNSUPPORTED.items():
        if raw.get(key) not in (None, "", []):
            raise WebConfigError(f"{where}.{key}: {why}")
    known = {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "client_allowed_sans",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
        *_UNSUPPORTED,
    }
    _unknown(raw, known, where)
    enabled = ("cert_file", "key_file", "client_ca_file", "client_ca", "client_auth_type")
    if not any(raw.get(k) for k in enabled):
        return None  # exporter-toolkit: TLS is on when one of these is set
    if not raw.get("cert_file") or not raw.get("key_file"):
        raise WebConfigError(f"{where}: cert_file and key_file are both required for TLS")
    auth_name = raw.get("client_auth_type")
    if auth_name in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
        raise WebConfigError(
            f"{where}.client_auth_type: {auth_name} (a client certificate that is not verified) "
            "is not supported by sentinel; use RequireAndVerifyClientCert"
        )
    auth_name = _choice(raw, "client_auth_type", _CLIENT_AUTH, "NoClientCert")
    verify_mode = _CLIENT_AUTH[auth_name]
    ca_file = raw.get("client_ca_file")
    ca_text = raw.get("client_ca")
    if (ca_file or ca_text) and verify_mode is ssl.CERT_NONE:
        raise WebConfigError(
            f"{where}: client CAs are configured without a client_auth_type "
            "(set RequireAndVerifyClientCert)"
        )
    if verify_mode is not ssl.CERT_NONE and not (ca_file or ca_text):
        raise WebConfigError(f"{where}.client_auth_type: {auth_name} needs client_ca_file")
    sans = raw.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
        raise WebConfigError(f"{where}.client_allowed_sans: must be a list of strings")
    if sans and verify_mode is ssl.CERT_NONE:
        raise WebConfigError(f"{where}.client_allowed_sans: needs a verifying client_auth_type")
    versions = {
        key: _VERSIONS[_choice(raw, key, _VERSIONS, default)]
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13"))
    }
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: must be true or false")
    return TLSSettings(
        cert_file=_path(raw["cert_file"], f"{where}.cert_file", base_dir),
        key_file=_path(raw["key_file"], f"{where}.key_file", base_dir),
        verify_mode=verify_mode,
        client_ca_file=None if not ca_file else _path(ca_file, f"{where}.client_ca_file", base_dir),
        client_ca=None if not ca_text else _string(ca_text, f"{where}.client_ca"),
        client_allowed_sans=tuple(sans),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        prefer_server_cipher_suites=prefer,
    )


def _parse_users(raw: dict[str, Any]) -> dict[str, bytes]:
    users = {}
    for user, hashed in raw.items():
        where = f"basic_auth_users.{user}"
        if ":" in user or not user.isprintable():
            raise WebConfigError(f"{where}: a user name cannot contain ':' or control characters")
        if not isinstance(hashed, str):
            raise WebConfigError(f"{where}: must be a bcrypt hash (a string)")
        match = _BCRYPT_RE.match(hashed)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise WebConfigError(
                f"{where}: not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
        users[user] = hashed.encode("ascii")
    return users


def _parse_headers(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    headers = []
    for name, value in raw.items():
        where = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise WebConfigError(f"{where}: this header cannot be configured")
        if not isinstance(value, str) or not value.isprintable():
            raise WebConfigError(f"{where}: must be a string")
        allowed = _HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(f"{where}: must be one of {', '.join(allowed)}")
        if value:
            headers.append((name, value))
    return tuple(headers)


def parse_web_config(document: Any, base_dir: str) -> WebSettings:
    """The settings of a parsed YAML document (None for an empty file: no TLS, no auth).
    Relative file names are taken from `base_dir`. Raises WebConfigError (without the file name)."""
    top = _mapping(document, "the file")
    _unknown(top, {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}, "")
    if top.get("rate_limit"):
        raise WebConfigError("rate_limit: not supported by sentinel (it bounds connections itself)")
    tls = _parse_tls(_mapping(top.get("tls_server_config"), "tls_server_config"), base_dir)
    http = _mapping(top.get("http_server_config"), "http_server_config")
    _unknown(http, {"http2", "headers"}, "http_server_config")
    if not isinstance(http.get("http2", True), bool):
        raise WebConfigError("http_server_config.http2: must be true or false")
    headers = _parse_headers(_mapping(http.get("headers"), "http_server_config.headers"))
    users = _parse_users(_mapping(top.get("basic_auth_users"), "basic_auth_users"))
    return WebSettings(tls=tls, users=users, headers=headers)


# ---------------------------------------------------------------- the I/O shell


@dataclass(frozen=True, slots=True)
class WebAccess:
    """What the web server applies to each connection; the default is plain HTTP, open."""

    ssl_context: ssl.SSLContext | None = None
    auth: BasicAuth | None = None
    headers: tuple[tuple[str, str], ...] = ()
    allowed_sans: tuple[str, ...] = ()

    def summary(self) -> str:
        """'TLS, basic auth' / 'plain HTTP, no password' (for `sentinel check`)."""
        tls = "TLS" if self.ssl_context is not None else "plain HTTP"
        return f"{tls}, {'basic auth' if self.auth is not None else 'no password'}"

    def peer_allowed(self, peercert: Any) -> bool:
        """With client_allowed_sans: does the verified client certificate name one of them?"""
        if not self.allowed_sans:
            return True
        if not isinstance(peercert, dict):
            return False
        names = {str(value) for _, value in peercert.get("subjectAltName", ())}
        return any(san in names for san in self.allowed_sans)


def _no_password() -> str:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise WebConfigError(
        "tls_server_config.key_file: the key is encrypted; give an unencrypted key"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror)
    return str(exc)


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server-side context for `tls` (reads the certificate, key and CA files)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = tls.min_version
    ctx.maximum_version = tls.max_version
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])  # sentinel speaks HTTP/1.1 only
    where = "tls_server_config"
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except (OSError, ValueError) as exc:
        raise WebConfigError(
            f"{where}: cannot load cert_file {tls.cert_file} with key_file {tls.key_file}: "
            f"{_reason(exc)}"
        ) from None
    if tls.verify_mode is not ssl.CERT_NONE:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file, cadata=tls.client_ca)
        except (OSError, ValueError) as exc:
            raise WebConfigError(f"{where}: cannot load the client CA: {_reason(exc)}") from None
        ctx.verify_mode = tls.verify_mode
    return ctx


def _read_settings(path: str) -> WebSettings:
    """The settings of the file at `path` (no file it names is read yet)."""
    import yaml  # only when a web config is set: PyYAML costs memory for nothing otherwise

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"web_config {path}: cannot read it: {_reason(exc)}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # its str() is several lines: the problem and its line only
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise WebConfigError(f"web_config {path}: {problem}{at}") from None
    try:
        return parse_web_config(document, os.path.dirname(os.path.abspath(path)))
    except WebConfigError as exc:
        raise WebConfigError(f"web_config {path}: {exc}") from None


def load_web_access(path: str) -> WebAccess:
    """Read the web config at `path` and everything it names; raises WebConfigError (one line
    starting with the path)."""
    settings = _read_settings(path)
    try:
        context = ssl_context(settings.tls) if settings.tls is not None else None
    except WebConfigError as exc:
        raise WebConfigError(f"web_config {path}: {exc}") from None
    return WebAccess(
        ssl_context=context,
        auth=BasicAuth(settings.users) if settings.users else None,
        headers=settings.headers,
        allowed_sans=settings.tls.client_allowed_sans if settings.tls is not None else (),
    )


def local_client_context(path: str) -> ssl.SSLContext | None:
    """For `sentinel ping` / `wrap` on this machine: None when the web config at `path` has no
    TLS, else a client context that trusts exactly the certificates of its cert_file (what the
    daemon serves), whatever name they are issued for: the ping goes to the loopback address, not
    to that name. Needs the certificate readable, not the key. Raises WebConfigError."""
    settings = _read_settings(path)
    if settings.tls is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.tls.cert_file)
    except (OSError, ValueError) as exc:
        raise WebConfigError(f"web_config {path}: cert_file: {_reason(exc)}") from None
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the served certificate is the anchor
    return ctx


# ---------------------------------------------------------------- basic auth


def is_open_path(target: str) -> bool:
    """Whether a request target is served without basic auth (/healthz, the heartbeat pings)."""
    path = target.split("?", 1)[0]
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def basic_credentials(head: bytes) -> tuple[str, str] | None:
    """(user, password) from the `Authorization: Basic` field of a request head, or None."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, colon, password = decoded.partition(":")
            return (user, password) if colon else None
    return None


class CheckCache:
    """Outcomes of bcrypt checks for `ttl` seconds, at most `size` of them (oldest evicted).
    Keys are SHA-256 digests; `clock` is monotonic, passed in. Pure: no I/O."""

    __slots__ = ("_clock", "_entries", "_size", "_ttl")

    def __init__(
        self, *, ttl: float = CACHE_SECONDS, size: int = CACHE_SIZE, clock: Callable[[], float]
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> bool | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, outcome = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return outcome

    def put(self, key: bytes, outcome: bool) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self._ttl, outcome)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _cache_key(user: str, hashed: bytes, password: str) -> bytes:
    h = hashlib.sha256()
    for part in (user.encode(), hashed, password.encode()):
        h.update(len(part).to_bytes(4, "big"))  # length-prefixed: no two triples collide
        h.update(part)
    return h.digest()


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes (see the module docstring)."""

    def __init__(
        self,
        users: Mapping[str, bytes],
        *,
        ttl: float = CACHE_SECONDS,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = dict(users)
        self.cache = CheckCache(ttl=ttl, size=size, clock=clock)
        self._lock: asyncio.Lock | None = None
        self.checks = 0  # bcrypt computations done (the cache's misses)

    async def allows(self, credentials: tuple[str, str] | None) -> bool:
        if credentials is None:
            return False
        user, password = credentials
        known = self._users.get(user)
        hashed = known if known is not None else _DUMMY_HASH
        key = _cache_key(user, hashed, password)
        outcome = self.cache.get(key)
        if outcome is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # one bcrypt at a time: a flood costs one core at most
                outcome = self.cache.get(key)
                if outcome is None:
                    outcome = await asyncio.to_thread(_checkpw, password, hashed)
                    self.checks += 1
                    self.cache.put(key, outcome)
        return outcome and known is not None


def _checkpw(password: str, hashed: bytes) -> bool:
    import bcrypt  # only when basic auth is configured

    try:
        return bool(bcrypt.checkpw(password.encode("utf-8"), hashed))
    except ValueError:
        return False
