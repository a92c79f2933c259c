"""A pipguard process whose stderr is a real terminal (a pty), as a user at a shell sees it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # conftest imports support modules: a runtime import would be circular
    from conftest import World
    from support.processes import Crew

LIVE_BLOCKERS = ("PIPGUARD_PROGRESS", "CI", "BUILD_ID", "BUILD_BUILDID", "PIP_IS_CI", "MAKEFLAGS", "NO_COLOR", "TERM")


class PtyReader:
    """Drains a pty master in a thread (a full pty would block the child) and keeps everything read."""

    def __init__(self, master: int) -> None:
        self.master = master
        self._data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every slave end is closed
                return
            if not chunk:
                return
            with self._lock:
                self._data.extend(chunk)

    def text(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", errors="replace")

    def join(self) -> None:
        self._thread.join(timeout=10)


def on_terminal(
    world: World, crew: Crew, cmd: Sequence[str], env: dict[str, str], stdout_path: Path
) -> tuple[subprocess.Popen[bytes], PtyReader]:
    """Start ``cmd`` with stderr on a 250-column pty and stdout in ``stdout_path``; nothing that would turn
    the live view off (CI variables, MAKEFLAGS, PIPGUARD_PROGRESS) is passed on."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    full = {k: v for k, v in world.env.items() if k not in LIVE_BLOCKERS}
    full.update(env, TERM="xterm-256color")
    with open(stdout_path, "wb") as stdout:
        popen = subprocess.Popen(list(cmd), env=full, cwd=world.root, stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave)
    crew.adopt(popen)
    os.close(slave)
    reader = PtyReader(master)
    crew.on_teardown(lambda: os.close(master))
    return popen, reader
