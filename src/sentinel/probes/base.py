"""The probe kinds: `Probe`, the interface every kind implements, and the registry that maps a
site's kind to its class.

One module per kind (lean.py: "http" for http:// and https:// URLs; tcp.py: "tcp" for
tcp://HOST:PORT and the `tcp = "HOST:PORT"` key). A new kind is one new module in this package
with a `@register`-ed `Probe` subclass: `kinds()` imports every module of the package once and
`Prober` dispatches each site through the result. (config.URL_SCHEMES names the schemes for
the config's validation, which must not import the probes; a test holds the two together.)
"""

from __future__ import annotations

import importlib
import pkgutil
import ssl
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

from sentinel.probes.common import AsyncLifecycle

if TYPE_CHECKING:
    from sentinel.config import SiteConfig
    from sentinel.probes.connect import Resolver
    from sentinel.probes.result import ProbeResult


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """What the daemon gives every kind: its User-Agent, a trust store replacing the system's
    (None: the system's), and whether plain-HTTP responses are timed by the kernel's stamp."""

    user_agent: str = "sentinel-uptime/0.1"
    ssl_context: ssl.SSLContext | None = None
    precise_latency: bool = False
    # One resolver pool shared by the kinds (connect.Resolver); None: each makes its own.
    resolver: Resolver | None = None


class Probe(AsyncLifecycle):
    """One kind of check. `probe(site)` never raises (except on cancellation): every failure
    is a `ProbeResult`. `start()` before the first probe, `close()` after the last."""

    kind: ClassVar[str]  # SiteConfig.kind
    schemes: ClassVar[tuple[str, ...]]  # URL schemes of this kind

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: ProbeSettings) -> Self: ...

    def set_precise_latency(self, on: bool) -> None:
        """From a reloaded config; kinds that time responses apply it from the next probe."""

    def forget(self, site: str) -> None:
        """The site left the config: let go of anything kept for it (by name)."""

    @abstractmethod
    async def probe(self, site: SiteConfig) -> ProbeResult: ...


_KINDS: dict[str, type[Probe]] = {}
_LOADED: list[bool] = []


_P = TypeVar("_P", bound=type[Probe])


def register(cls: _P) -> _P:
    """Class decorator: `cls` probes the sites of `cls.kind`."""
    known = _KINDS.get(cls.kind)
    if known is not None and known is not cls:
        raise ValueError(f"probe kind {cls.kind!r} registered twice ({known.__name__})")
    _KINDS[cls.kind] = cls
    return cls


def kinds() -> dict[str, type[Probe]]:
    """Every registered kind, after importing each module of this package once."""
    if not _LOADED:
        package = importlib.import_module(__package__ or "sentinel.probes")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        _LOADED.append(True)
    return dict(_KINDS)
