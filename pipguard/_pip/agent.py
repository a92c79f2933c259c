"""pip's User-Agent, worked out once per command and handed to pipguard's children.

pip builds the header (``network.session.user_agent``) in every process that opens a session: it runs
``lsb_release -a`` (a shell script of a dozen processes on Debian) and ``rustc --version``, about 0.15 s.
Plain pip pays it twice for an isolated build (itself and the pip that installs the build requirements);
pipguard's build children and the pips they run would pay it once more each. The value depends only on the
interpreter, the machine and the environment (``PATH``, ``PYTHONPATH``, the CI and user-data variables,
which a child inherits unchanged), so a child of the same interpreter and paths sends the very header its
parent worked out, and works it out itself otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable

VARIABLE = "PIPGUARD_USER_AGENT"
_worked_out: list[str] = []
_working = threading.Lock()  # held while the header is worked out (early, in a thread, or when pip asks)
_original: list[Callable[[], str]] = []


def _inputs() -> list[str]:
    return [sys.executable, os.environ.get("PATH", ""), os.environ.get("PYTHONPATH", "")]


def user_agent(original: Callable[[], str]) -> Callable[[], str]:
    """The hook of pip's ``user_agent``: the parent's value where it fits this process, else pip's own."""
    _original[:] = [original]

    def agent() -> str:
        return _value()

    return agent


def work_out_early() -> None:
    """Start working the header out now, in a thread, for a command that will open a session: pip's probes
    are processes (``lsb_release``, ``rustc``) that then run on another core while pip imports and parses
    its command, and the session pip opens finds the header ready. The same function, in the same process
    and environment: the same header."""
    if _original and not _worked_out:
        threading.Thread(target=_early, name="pipguard-user-agent", daemon=True).start()


def _early() -> None:
    """A failure here is pip's to meet when it asks (as plain pip meets it), not a thread's traceback."""
    with contextlib.suppress(Exception):
        _value()


def _value() -> str:
    from pipguard import settings

    with _working:
        if not _worked_out:
            try:
                inputs, value = json.loads(settings.variable(VARIABLE) or "null") or (None, None)
            except (ValueError, TypeError):
                inputs, value = None, None
            _worked_out.append(value if inputs == _inputs() and isinstance(value, str) else _original[0]())
        return _worked_out[0]


def handed() -> dict[str, str]:
    """The variable a child is given: this process's header, once pip worked it out."""
    return {VARIABLE: json.dumps([_inputs(), _worked_out[0]])} if _worked_out else {}
