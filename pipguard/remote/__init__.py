"""The fleet tier: built wheels shared across machines through a plain HTTP(S) or file store.

Modules, one concern each: ``config`` (the variables, parsed once, credentials decided), ``keyfiles``
(openssl's PEM keys and ed25519 signatures, through pyca/cryptography), ``manifest`` (the remote layout,
what a writer publishes and a reader accepts), ``transport`` (GET / PUT with bounded waits), ``tier``
(fetch and upload, never raising; what a fetched wheel must be), ``stats`` (counts summed over processes).
"""

from __future__ import annotations

import threading

from pipguard import settings
from pipguard.display import warn
from pipguard.errors import RemoteUnavailable
from pipguard.remote.config import RemoteConfig, parse
from pipguard.remote.tier import Tier
from pipguard.remote.transport import open_transport
from pipguard.sources import Network

__all__ = ["RemoteConfig", "Tier", "configured", "open_tier"]


def configured() -> tuple[RemoteConfig | None, list[str]]:
    """The remote configuration of this process's environment, and complaints about it."""
    return parse(settings.remote_environment())


def open_tier(network: Network, stopping: threading.Event) -> Tier | None:
    """The remote tier this environment configures (None: none, or unusable after a warning); its requests
    end at once when ``stopping`` is set."""
    config, complaints = configured()
    for complaint in complaints:
        warn(complaint)
    if config is None:
        return None
    try:
        return Tier(config, open_transport(config, network, stopping), stopping)
    except RemoteUnavailable as exc:
        warn(f"not using the remote cache {config.display}: {exc}")
        return None
