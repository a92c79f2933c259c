"""``python -m pipguard``: the same as the ``pipguard`` command."""

from pipguard.cli import console

console()
