"""Write files under a guest's root directory tree (an unpacked or mounted root).

Every component below the root is opened with O_NOFOLLOW relative to its parent, so a
symlink anywhere on the path (``/etc -> /host/etc``) or a ``..`` is refused instead of
followed out of the root. The file is written to a temporary name in its directory and
renamed over the old one; it keeps the old file's owner and mode (root, 0644 when new).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from novanet.domain.errors import InvalidInput
from novanet.inject.ext4 import DEFAULT_MODE, Written, guest_path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(parent_fd: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        if os.geteuid() == 0:
            os.fchown(fd, 0, 0)
        return fd
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InvalidInput(
                f"{name} is a symlink or not a directory: refusing a path that escapes the root"
            ) from None
        raise


def write_file(root: Path, path: str, content: bytes) -> Written:
    target = guest_path(path)
    if not root.is_dir():
        raise InvalidInput(f"root {root} is not a directory")
    fds = [os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)]
    try:
        for part in target.parts[1:-1]:
            fds.append(_open_dir(fds[-1], part, create=True))
        dfd = fds[-1]
        mode, uid, gid = DEFAULT_MODE, 0, 0
        try:
            st = os.stat(target.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise InvalidInput(f"{target} is a symlink: refusing a path that escapes the root")
            if not stat.S_ISREG(st.st_mode):
                raise InvalidInput(f"{target} exists and is not a regular file")
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        elif os.geteuid() != 0:
            uid, gid = os.geteuid(), os.getegid()
        tmp = f".{target.name}.{secrets.token_hex(4)}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                if os.geteuid() == 0:
                    os.fchown(f.fileno(), uid, gid)
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.rename(tmp, target.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        return Written(str(target), len(content), mode, uid, gid)
    finally:
        for fd in reversed(fds):
            os.close(fd)


def write_files(root: Path, files: Mapping[str, bytes]) -> list[Written]:
    return [write_file(Path(root), p, c) for p, c in files.items()]
