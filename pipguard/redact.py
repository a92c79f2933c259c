"""Credentials never leave the process: every URL or command line shown or stored passes through here."""

from __future__ import annotations

import re

# scheme://anything-before-the-last-@ of a URL's authority, anywhere in a string (command lines carry URLs
# among other words). The last @, as pip and urllib split it: a raw @ in a password is part of the secret.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s]*)@")


def redact(text: str) -> str:
    """Replace the user-info part of every URL in ``text`` with ``****``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}****@", text)


def command_line(argv: list[str]) -> str:
    """A shell-like, redacted rendering of a command line for records and display."""
    import shlex

    return redact(" ".join(shlex.quote(word) for word in argv))
