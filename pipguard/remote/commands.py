"""``pipguard guard remote status | push [PATTERN]``: see the remote store as this machine does, fill it.

- ``status``: the URL (redacted), read-only or read-write, the keys configured (by writer id), whether
  the store answers, and, when writing is on, a write probe (a PUT of a small object read back).
- ``push [PATTERN]``: upload the wheels built on this machine (not those fetched from the store), signed
  when a signing key is set, never overwriting what is there.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from pipguard import sandbox
from pipguard.errors import RemoteRefused, RemoteUnavailable
from pipguard.remote import configured, open_tier
from pipguard.remote.config import RemoteConfig
from pipguard.remote.manifest import ANYONE, LAYOUT
from pipguard.remote.tier import Tier
from pipguard.sources import Network
from pipguard.store import Entry, Store

ERROR = 1
PROBE = f"{LAYOUT}/probe/{{writer}}.txt"


def _network() -> Network:
    from pipguard._pip.describe import network_from_config

    return network_from_config()


def describe_mode(config: RemoteConfig) -> str:
    if not config.write:
        return "read-only"
    signer = config.signing_key.public.writer_id if config.signing_key else None
    return f"read-write, uploads signed as {signer}" if signer else "read-write, uploads unsigned"


def describe_trust(config: RemoteConfig) -> str:
    if config.verify_keys:
        return ", ".join(key.writer_id for key in config.verify_keys)
    return "none: wheels from anyone who can write to the store are used"


def status() -> int:
    config, complaints = configured()
    for complaint in complaints:
        print(f"warning: {complaint}")
    if config is None:
        sys.stderr.write("ERROR: no remote cache configured (set PIPGUARD_REMOTE)\n")
        return ERROR
    print(f"Remote cache: {config.display}")
    print(f"Mode: {describe_mode(config)}")
    print(f"Verify keys: {describe_trust(config)}")
    if config.write:
        print(f"Writer builds: {sandbox.describe()}")
    tier = open_tier(_network(), threading.Event())
    if tier is None:
        return ERROR
    try:
        tier.transport.get(f"{LAYOUT}/keys/status-probe.json", lambda _chunk: None, 1 << 16)
        print("Reachable: yes")
    except RemoteUnavailable as exc:
        print(f"Reachable: no ({exc})")
        return ERROR
    return _write_probe(tier) if config.write else 0


def _write_probe(tier: Tier) -> int:
    signer = tier.config.signing_key
    path = PROBE.format(writer=signer.public.writer_id if signer else ANYONE)
    body = b"pipguard write probe\n"
    try:
        tier.transport.put(path, body, replace=True)
        read = bytearray()
        tier.transport.get(path, read.extend, 1 << 16)
    except (RemoteRefused, RemoteUnavailable) as exc:
        print(f"Write probe: failed ({exc})")
        return ERROR
    print("Write probe: ok" if bytes(read) == body else "Write probe: the object written did not read back")
    return 0 if bytes(read) == body else ERROR


def push(store: Store, matches: Callable[[Entry], bool]) -> int:
    config, _complaints = configured()
    if config is None or not config.write:
        sys.stderr.write("ERROR: set PIPGUARD_REMOTE and PIPGUARD_REMOTE_WRITE=1 to push\n")
        return ERROR
    tier = open_tier(_network(), threading.Event())
    if tier is None:
        return ERROR
    chosen = [e for e in store.entries() if matches(e) and not e.manifest.get("source", {}).get("remote")]
    for entry in chosen:
        verified = store.lookup(entry.key)
        if verified is not None:
            tier.upload(entry.key, verified.wheel)
        if tier.off or tier.uploads_off:
            break
    print(f"Uploaded {tier.counts['uploaded']} of {len(chosen)} wheels to {config.display}")
    return 0 if tier.counts["uploaded"] == len(chosen) else ERROR
