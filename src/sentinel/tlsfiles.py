"""The TLS files a site may name: `ca_file` (PEM certificates ADDED to the system trust store)
and `client_cert` + `client_key` (a client certificate, for servers that ask for one).

One loader for both users, so that a file the config check accepted is a file the probe can
load: `check_ca_file` / `check_client_pair` validate the config (one-line errors), `load_into`
puts the files into a probe's `SSLContext`.
"""

from __future__ import annotations

import os
import ssl


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> str:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise _EncryptedKeyError


def _readable(path: str) -> None:
    if not os.path.isabs(path):
        raise ValueError("must be an absolute path")
    if not os.path.isfile(path):
        raise ValueError("no such file")
    if not os.access(path, os.R_OK):
        raise ValueError("permission denied")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _load_ca(context: ssl.SSLContext, ca_file: str) -> None:
    try:
        _readable(ca_file)
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"cannot load {ca_file!r}: {_reason(exc)}") from None


def load_into(
    context: ssl.SSLContext,
    *,
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> None:
    """Add `ca_file` to the context's trust and load the client certificate. ValueError with a
    one-line message naming the key on any problem."""
    if ca_file is not None:
        try:
            _load_ca(context, ca_file)
        except ValueError as exc:
            raise ValueError(f"ca_file: {exc}") from None
    if client_cert is not None:
        try:
            _readable(client_cert)
            if client_key is not None:
                _readable(client_key)
            context.load_cert_chain(client_cert, client_key, password=_no_password)
        except _EncryptedKeyError:
            raise ValueError(
                f"client_key: {client_key or client_cert!r} is encrypted (use a key without a "
                "passphrase, readable only by sentinel)"
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"client_cert: cannot load {client_cert!r} with key {client_key!r}: {_reason(exc)}"
            ) from None


def check_ca_file(path: str) -> str:
    """The config check of `ca_file`: exists, readable, holds at least one PEM certificate."""
    _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path)
    return path


def check_readable(path: str) -> str:
    """The config check of `client_cert` / `client_key` alone (the pair is checked together)."""
    try:
        _readable(path)
    except ValueError as exc:
        raise ValueError(f"cannot load {path!r}: {exc}") from None
    return path


def check_client_pair(client_cert: str | None, client_key: str | None) -> str | None:
    """None when the pair is fine (both or neither set, and they load), else one line."""
    if client_cert is None and client_key is None:
        return None
    if client_cert is None:
        return "client_key: needs client_cert too (set both or neither)"
    if client_key is None:
        return "client_cert: needs client_key too (set both or neither)"
    try:
        load_into(
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
            client_cert=client_cert,
            client_key=client_key,
        )
    except ValueError as exc:
        return str(exc)
    return None
