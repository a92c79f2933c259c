"""pip's TLS context made in a thread while pip parses its command, not when it opens its session.

pip makes one TLS context per process (``cli.index_command._create_truststore_ssl_context``, cached):
truststore's context with certifi's CA bundle loaded, 23 ms here, on the way from the command line to the
first request. OpenSSL loads the bundle without the GIL, so a thread started when the seam is attached
does it while pip imports and parses. pip's call then waits for that thread's result (the same cached
function, called once) instead of making a second context beside it.

Made early only where making it cannot say anything: the function logs a warning, and returns no context,
when ``ssl`` or pip's truststore cannot be imported; then pip alone calls it, when and if it would. A
context pip does not use (``--use-deprecated=legacy-certs``) costs that thread's CPU and nothing else.

pip versions: the function's name and module, the same in pip 25.3 and 26.3.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

_making = threading.Lock()  # held while the context is made (in the thread, or when pip asks)
_original: list[Callable[[], Any]] = []


def context(original: Callable[[], Any]) -> Callable[[], Any]:
    """The hook of pip's ``_create_truststore_ssl_context``: pip's own, one caller at a time."""
    _original[:] = [original]

    def create() -> Any:
        with _making:
            return original()

    return create


def make_early() -> threading.Thread | None:
    """Start making the context now, in a thread, for a command that will open a session."""
    if not _original:
        return None
    thread = threading.Thread(target=_early, name="pipguard-tls", daemon=True)
    thread.start()
    return thread


def _early() -> None:
    """A failure here is pip's to meet when it asks (the function caches no exception), not a thread's."""
    with contextlib.suppress(Exception), _making:
        try:
            import ssl  # noqa: F401 - without either, pip's function warns: pip's to do, when it would

            from pip._vendor import truststore  # noqa: F401
        except ImportError:
            return
        _original[0]()
