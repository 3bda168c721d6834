"""Reload reconciliation: apply a re-read config to a running `Daemon` (SIGHUP), and forget the
sites that left it.

A config that fails to load, or whose channels, passwords or heartbeat tokens fail, is refused
whole: the running config stays, `sentinel_reload_ok` goes to 0. A good one replaces the sites,
maintenance windows, channels, limits and heartbeats in place; states of kept sites survive.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sentinel.canary import canary_interval
from sentinel.config import Config, ConfigError, SiteConfig
from sentinel.config_child import load_config_isolated_async
from sentinel.heartbeats.config import HeartbeatConfig, TokenError, read_tokens
from sentinel.logsetup import kv
from sentinel.maintenance import MaintenanceClock
from sentinel.monitor import SiteState, Status
from sentinel.notify.channels import SetupError
from sentinel.notify.smtp import PasswordError
from sentinel.site_states import summary_line
from sentinel.store import StoreError
from sentinel.webauth import WebConfigError

if TYPE_CHECKING:
    from sentinel.daemon import Daemon

log = logging.getLogger("sentinel")


async def reload(daemon: Daemon) -> bool:
    """SIGHUP: read the file again; apply it if valid, else keep the old config running."""
    daemon.notifier.reloading()
    try:
        new = await load_config_isolated_async(daemon.config_path)
        channels = daemon.dispatch.build(new)
        hb_tokens = read_tokens(owned_heartbeats(new))
        access = daemon.web_access(new)
    except (ConfigError, PasswordError, SetupError, TokenError, WebConfigError) as exc:
        lines = exc.errors if isinstance(exc, ConfigError) else [str(exc)]
        for line in lines:
            log.error("reload rejected, keeping the running config: %s", line)
        daemon.metrics.reload_ok.set(0)
        daemon.notifier.ready(summary_line(daemon.states))
        return False
    old_names = set(daemon.sites)
    daemon.config = new
    daemon.sites = owned_sites(new)
    daemon.maintenance = MaintenanceClock(new.maintenance)
    daemon.canaries.configure(new.canaries, canary_interval(new.sites))
    for name in old_names - daemon.sites.keys():
        forget_site(daemon, name)
    for name in daemon.sites.keys() - old_names:
        daemon.states[name] = SiteState(site=name)
        daemon.metrics.add_site(daemon.states[name])
    daemon.dispatch.configure(new, channels)
    daemon.swap_web_access(access)
    if daemon.history is not None and new.history is not None:
        daemon.history.config = new.history
    if daemon.early is not None and new.early is not None:
        daemon.early.update(new.early)
        for name, site in daemon.sites.items():
            if not site.latency_drift:
                daemon.early.remove_site(name)
    daemon.scheduler.set_max_concurrency(new.max_concurrency)
    daemon.prober.set_max_concurrency(new.max_concurrency)  # the resolver pool too
    daemon.scheduler.set_batch(new.batch_window)
    daemon.prober.set_precise_latency(new.precise_latency)
    daemon.scheduler.set_sites(daemon.sites.values())
    daemon.heartbeats.reload(owned_heartbeats(new), hb_tokens, daemon.store)
    daemon.deadman.configure(new.deadman)
    daemon.metrics.sites.set(len(daemon.sites))
    daemon.metrics.reload_ok.set(1)
    daemon.metrics.reload_time.set(time.time())
    added, removed = daemon.sites.keys() - old_names, old_names - daemon.sites.keys()
    log.info(
        "config reloaded %s", kv(sites=len(daemon.sites), added=len(added), removed=len(removed))
    )
    if new.shard is not None:
        log.info("shard %s: %d of %d sites", new.shard, len(daemon.sites), len(new.sites))
    daemon.notifier.ready(summary_line(daemon.states))
    return True


def owned_sites(config: Config) -> dict[str, SiteConfig]:
    """The sites this sentinel probes: all, or with `[sentinel] shard` those of its shard. The
    others are not probed and appear nowhere (metrics, status page, API): another shard has them."""
    shard = config.shard
    return {s.name: s for s in config.sites if shard is None or shard.owns(s.name)}


def owned_heartbeats(config: Config) -> tuple[HeartbeatConfig, ...]:
    """Heartbeats are pushed to one sentinel, not probed: with shards, shard 1 watches them all."""
    if config.shard is None or config.shard.owns_heartbeats:
        return config.heartbeats
    return ()


def forget_site(daemon: Daemon, name: str) -> None:
    """A site left the config (at reload, or while sentinel was stopped): drop its state, metrics,
    history and drift tracking, and close its incident quietly (no RECOVERED email)."""
    state = daemon.states.pop(name, None)
    daemon.forget_internal_error(name)
    daemon.alert_context.forget(name)
    daemon.prober.forget(name)
    daemon.metrics.remove_site(name)
    if daemon.history is not None:
        daemon.history.forget(name)
    if daemon.early is not None:
        daemon.early.remove_site(name)
    if state is not None and state.status is Status.DOWN:
        log.info("site removed while down; incident closed without email %s", kv(site=name))
    if daemon.store is not None:
        try:
            daemon.store.delete_site(name)
        except StoreError as exc:
            daemon.store_failed(exc)
