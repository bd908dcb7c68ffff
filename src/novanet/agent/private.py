"""Secrets on disk: the database URL handed to the lease script.

dnsmasq runs the lease script with root's privileges but passes nothing to it beyond the
event, so the script needs the database URL from somewhere. A command line is world-
readable (/proc/PID/cmdline) and so is a log; a file only root can read is not. The
agent writes the URL to such a file and the lease script is told the file's path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from novanet.domain.errors import ConfigError

MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, 0600, owned by whoever runs this."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text(encoding="utf-8") == text and stat.S_IMODE(path.stat().st_mode) == MODE:
            return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        os.fchmod(fd, MODE)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_private(path: Path) -> str:
    """The text of a file no one else may read or write; ConfigError otherwise."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise ConfigError(f"{path} must belong to uid {os.geteuid()} with mode 0600: it holds a secret")
    return text
