"""What pipguard trusts on disk: directories no other user can change, and files that are what they claim.

A wheel in the cache is installed, and a record is read, on the strength of where it lies. That is only
worth something if no other local user can put anything there, or swap the path for another one:

- every directory on the way to the cache root is owned by this user or root, and is not writable by
  anyone else, except a sticky one such as ``/tmp``, where the next component must be this user's or
  root's (nobody else may rename it then);
- every directory pipguard reads inside the cache is a real directory (opened with ``O_NOFOLLOW``), owned
  by this user or root, not writable by anyone else;
- every file it reads is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only if it is a regular file (a
  FIFO planted where a record should be must not hang a reader).

A team's cache (``PIPGUARD_CACHE_GROUP``, a group this user is in) widens "this user or root" to the
members of that one group, and nobody else: a directory or file whose group is the team's may belong to
any member and be writable by the group, never by others. Only members can make such a thing where only
the group can write (nobody may give a file a group they are not in), so an outsider keeps every check
above. Whatever pipguard makes there is the group's (mode 2770 or 0660, the
team's gid, whatever the umask), so that every member can read it, lock it, and remove it.

``PIPGUARD_TRUST_SHARED_CACHE=1`` waives the owner and mode checks (a cache shared on purpose), never the
checks on what a path is.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pipguard.errors import UntrustedCache
from pipguard.keys import stream_sha256

SYMLINK_DEPTH = 40  # the kernel's own limit (MAXSYMLINKS)
SHARED_HINT = "set PIPGUARD_CACHE_GROUP to share it with a group, or PIPGUARD_TRUST_SHARED_CACHE=1 to use it anyway"
TEAM_DIR_MODE = 0o2770  # setgid: what members add below keeps the team's group
TEAM_FILE_MODE = 0o660
PRIVATE_FILE_MODE = 0o600


def trusted_owner(uid: int) -> bool:
    """This user, or root (who can change anything anyway)."""
    return uid in (os.getuid(), 0)


@dataclass(frozen=True)
class Policy:
    """Whose directories and files are trusted, and how pipguard makes its own: this user's and root's
    (the default), also those of ``group``, a team this user is in (PIPGUARD_CACHE_GROUP), or anyone's
    (``waived``: PIPGUARD_TRUST_SHARED_CACHE). ``refusal`` says why a team asked for cannot be used."""

    group: int | None = None
    waived: bool = False
    refusal: str | None = None

    def problem(self, info: os.stat_result) -> str | None:
        """Why someone not trusted could change what ``info`` describes, or None."""
        if self.waived:
            return None
        if not (trusted_owner(info.st_uid) or self._teams(info)):
            return "belongs to another user"
        if info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and not self._teams(info)):
            return "can be written by other users"
        return None

    def _teams(self, info: os.stat_result) -> bool:
        """The team's group: where only the group may write, only a member can have made it so."""
        return self.group is not None and info.st_gid == self.group

    @property
    def file_mode(self) -> int:
        """The mode of files pipguard creates: private, or the team's."""
        return PRIVATE_FILE_MODE if self.group is None else TEAM_FILE_MODE

    def make_dir(self, path: Path) -> None:
        """Create ``path`` and any missing parent: private to this user (0700), or the team's."""
        if self.group is None:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return
        if not os.path.isdir(path.parent):
            self.make_dir(path.parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return  # another member's, or this user's from before: as it is
        self.share(path)

    def share(self, path: Path | int) -> None:
        """In a team's cache, give a file or directory this user made (a path, never followed, or an open
        descriptor) the team's group and mode, whatever the umask; anyone else's is left as it is."""
        if self.group is None:
            return
        fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                return
            if info.st_gid != self.group:
                os.fchown(fd, -1, self.group)
            os.fchmod(fd, TEAM_DIR_MODE if stat.S_ISDIR(info.st_mode) else TEAM_FILE_MODE)
        finally:
            if not isinstance(path, int):
                os.close(fd)

    def unwaived(self) -> Policy:
        """The same team, without PIPGUARD_TRUST_SHARED_CACHE: for what must be this user's or the team's."""
        return Policy(self.group, waived=False, refusal=self.refusal)


def configured() -> Policy:
    """The policy the settings ask for (PIPGUARD_TRUST_SHARED_CACHE, PIPGUARD_CACHE_GROUP)."""
    from pipguard import settings

    waived = settings.trusts_shared_cache()
    named = settings.cache_group()
    if not named:
        return Policy(waived=waived)
    group, refusal = _resolve_group(named)
    return Policy(group, waived=waived, refusal=refusal)


@functools.cache
def _resolve_group(named: str) -> tuple[int | None, str | None]:
    """The gid PIPGUARD_CACHE_GROUP names (a group name or a number), if this user is one of its members
    (root always is); else why not."""
    import grp

    try:
        gid = int(named) if named.isdigit() else grp.getgrnam(named).gr_gid
    except KeyError:
        return None, f"PIPGUARD_CACHE_GROUP={named!r} names no group here"
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        return None, f"PIPGUARD_CACHE_GROUP={named!r}: this user is not a member of that group"
    return gid, None


def check_ancestors(root: Path, policy: Policy) -> None:
    """Raise UntrustedCache if another user can swap ``root`` (or anything on the way to it) for another.

    Follows the path as the kernel resolves it, symlinks included, and checks every directory a name is
    looked up in. A sticky directory others can write (``/tmp``), this user's or root's, is fine if the
    next one is this user's or root's: nobody else may rename it there. Not the team's: a member's group
    is no proof there, since a setgid directory anyone can write gives its group to what anyone makes."""
    for directory, name in _lookups(os.path.abspath(root), 0):
        info = os.lstat(directory)
        problem = policy.problem(info)
        if problem is not None and not (
            info.st_mode & stat.S_ISVTX
            and trusted_owner(info.st_uid)
            and trusted_owner(os.lstat(os.path.join(directory, name)).st_uid)
        ):
            raise UntrustedCache(f"{directory} (above the cache) {problem}; {SHARED_HINT}")


def _lookups(path: str, depth: int) -> list[tuple[str, str]]:
    """``(directory, name)`` for each name the kernel looks up to resolve the absolute ``path``."""
    if depth > SYMLINK_DEPTH:
        raise UntrustedCache(f"too many symbolic links on the way to {path}")
    found: list[tuple[str, str]] = []
    current = "/"
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        found.append((current, name))
        candidate = os.path.join(current, name)
        if os.path.islink(candidate):
            found += _lookups(os.path.join(current, os.readlink(candidate)), depth + 1)
            candidate = os.path.realpath(candidate)
        current = candidate
    return found


def open_directory(path: Path, policy: Policy) -> int:
    """A descriptor of ``path``, a real directory that ``policy`` trusts.

    Raises UntrustedCache for a symlink, a non-directory or a directory ``policy`` does not trust; OSError if
    it cannot be opened (FileNotFoundError: there is nothing there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise UntrustedCache(f"{path} is not a directory (symlinks are not followed)") from exc
    try:
        check_private(path, os.fstat(fd), policy)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_directory(path: Path, policy: Policy) -> None:
    """:func:`open_directory`, for a caller that only needs to know."""
    os.close(open_directory(path, policy))


def check_private(path: Path, info: os.stat_result, policy: Policy) -> None:
    """Raise UntrustedCache if someone ``policy`` does not trust owns ``path`` or can write to it."""
    problem = policy.problem(info)
    if problem is not None:
        raise UntrustedCache(f"{path} {problem}; {SHARED_HINT}")


def open_regular(name: str | Path, dir_fd: int | None = None) -> int:
    """A read-only descriptor of ``name``, a regular file (never a symlink, FIFO, socket or device).

    Opening never blocks (``O_NONBLOCK``: a FIFO with no writer would); ValueError for anything but a
    regular file, OSError if it cannot be opened."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{name} is not a regular file")
    return fd


def read_regular(name: str | Path, limit: int, dir_fd: int | None = None) -> bytes:
    """At most ``limit`` bytes of the regular file ``name`` (see :func:`open_regular`)."""
    with os.fdopen(open_regular(name, dir_fd), "rb") as handle:
        return handle.read(limit)


def matches(path: Path, size: int, sha256: str) -> bool:
    """Whether the regular file ``path`` has the size and sha256 a manifest or a handoff promised."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return os.fstat(handle.fileno()).st_size == size and stream_sha256(handle) == sha256
