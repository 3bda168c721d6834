"""The webhook channel: one JSON POST per alert (the version-1 payload of sentinel.notify.payload),
optionally signed: `X-Sentinel-Signature: sha256=<hex HMAC-SHA256 of the body>` with the key in
`secret_file`, so a receiver can tell sentinel's alerts from anyone else's POSTs."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from sentinel.notify.channel_config import ChannelConfig
from sentinel.notify.channels.base import Delivery, SetupError
from sentinel.notify.errors import SendError
from sentinel.notify.payload import Alert, encode_alert

__all__ = ["SIGNATURE_HEADER", "WebhookChannel", "read_secret", "sign", "webhook_body"]

SIGNATURE_HEADER = "X-Sentinel-Signature"


def read_secret(path: str, where: str) -> bytes:
    """The key in `secret_file` (one trailing newline is the file's, not the key's)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SetupError(f"{where}: secret_file: {path}: no such file") from None
    except PermissionError:
        raise SetupError(f"{where}: secret_file: {path}: permission denied") from None
    except OSError as exc:
        raise SetupError(f"{where}: secret_file: {path}: cannot read ({exc.strerror})") from None
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise SetupError(f"{where}: secret_file: {path}: empty")
    return data


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value. Pure."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def webhook_body(alert: Alert) -> bytes:
    """The POSTed body: the version-1 payload as compact UTF-8 JSON. Pure."""
    return json.dumps(alert.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


class WebhookChannel:
    def __init__(self, cfg: ChannelConfig, secret: bytes | None) -> None:
        from sentinel.notify.channels.http import HttpPoster

        self.name = cfg.name
        self.url = cfg.urls[0]
        self._secret = secret
        self._http = HttpPoster()

    @classmethod
    def from_config(cls, cfg: ChannelConfig) -> WebhookChannel:
        where = f'channel "{cfg.name}"'
        secret = read_secret(cfg.secret_file, where) if cfg.secret_file else None
        return cls(cfg, secret)

    def render(self, alert: Alert) -> bytes:
        return encode_alert(alert).encode()

    async def send(self, delivery: Delivery) -> None:
        if delivery.alert is None:
            raise SendError(f"webhook {self.name}: the item holds no alert", permanent=True)
        body = webhook_body(delivery.alert)
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        await self._http.post(self.url, body, headers, f"webhook {self.name}")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._http.close()
