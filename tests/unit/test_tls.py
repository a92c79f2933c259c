"""pip's TLS context, made in a thread while pip parses: pip's own cached function, called once, and the
context pip's session gets is the one that thread made."""

from __future__ import annotations

import pytest
from pip._internal.cli import index_command

from pipguard._pip import tls


def test_the_context_made_early_is_the_one_pips_session_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    made = index_command._create_truststore_ssl_context
    made.cache_clear()
    monkeypatch.setattr(tls, "_original", [])
    create = tls.context(made)
    thread = tls.make_early()
    assert thread is not None
    thread.join()
    assert made.cache_info().misses == 1
    context = create()  # what pip's _build_session calls once the seam is attached
    assert context is not None and context is made()
    assert made.cache_info().misses == 1  # one context, made once


def test_without_the_seam_nothing_is_made_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "_original", [])
    assert tls.make_early() is None
