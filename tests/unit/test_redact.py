"""Credentials in URLs never reach a record, a display line or the cache."""

from __future__ import annotations

import pytest

from pipguard.redact import command_line, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:s3cret@pypi.example/simple/", "https://****@pypi.example/simple/"),
        ("https://ghp_tok3n@github.com/o/r.git", "https://****@github.com/o/r.git"),
        ("git+https://user:s3cret@host/r.git@v1.0#egg=r", "git+https://****@host/r.git@v1.0#egg=r"),
        ("https://user:s3cret@host", "https://****@host"),
        # pip splits user-info at the last "@", so a raw "@" in a password is part of the secret.
        ("https://user:p@ss@host/simple", "https://****@host/simple"),
    ],
)
def test_userinfo_is_replaced(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_every_url_in_a_string_is_redacted() -> None:
    text = "--index-url https://a:one@i.example/simple --extra-index-url=https://b:two@j.example/simple x"
    redacted = redact(text)
    assert "one" not in redacted and "two" not in redacted
    assert redacted == "--index-url https://****@i.example/simple --extra-index-url=https://****@j.example/simple x"


@pytest.mark.parametrize(
    "text",
    [
        "https://pypi.org/simple/",
        "pkg @ https://files.example/pkg-1.0.tar.gz",
        "mail user@example.com about it",
        "git+https://github.com/o/r.git@v1.0",
        "",
    ],
)
def test_text_without_userinfo_is_untouched(text: str) -> None:
    assert redact(text) == text


def test_command_line_quotes_words_and_redacts() -> None:
    """Records show a command a user can read back and paste, without its secrets."""
    argv = ["pipguard", "install", "--index-url", "https://u:tok@h.example/simple", "my pkg", "a'b", "x>=1"]
    shown = command_line(argv)
    assert "tok" not in shown
    assert shown == "pipguard install --index-url https://****@h.example/simple 'my pkg' 'a'\"'\"'b' 'x>=1'"


def test_command_line_redacts_a_url_inside_a_quoted_word() -> None:
    shown = command_line(["pip", "install", "pkg @ https://u:tok@h.example/pkg.tar.gz"])
    assert shown == "pip install 'pkg @ https://****@h.example/pkg.tar.gz'"
