"""Write files into an ext4 guest image (raw whole-disk filesystem or partition N of an
MBR/GPT disk) without mounting it and without root: e2fsprogs' ``debugfs -w`` on a
temporary copy next to the image, read back and checked, then an atomic rename.

The image is never left half-written: a refusal (not ext2/3/4, no such partition, a
path component that is a symlink or not a directory) happens before the copy, and any
failure after it only removes the copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from novanet.domain.errors import InvalidInput, NovanetError
from novanet.inject import disk

EXT_MAGIC = 0xEF53
_SB_OFFSET = 1024
_TYPE = re.compile(r"Type:\s+(\S+)")
_MODE = re.compile(r"Mode:\s+0?([0-7]{3,4})")
_OWNER = re.compile(r"User:\s+(\d+)\s+Group:\s+(\d+)")
DEFAULT_MODE = 0o644


class InjectError(NovanetError):
    code = "inject_failed"
    http_status = 500
    exit_code = 1


@dataclass(frozen=True)
class Written:
    path: str
    size: int
    mode: int
    uid: int
    gid: int


def guest_path(path: str) -> PurePosixPath:
    """An absolute path inside the guest with no ``..``, ``.`` or empty component."""
    raw = path.lstrip("/").split("/")
    if any(part in ("..", ".", "") for part in raw):
        raise InvalidInput(f"guest path {path!r} escapes or is not a file path")
    p = PurePosixPath("/" + "/".join(raw))
    for part in p.parts[1:]:
        if any(c in part for c in "\n\r\t \"'\\") or len(part) > 255:
            raise InvalidInput(f"guest path {path!r} has a component debugfs cannot name")
    return p


def _debugfs() -> str:
    exe = shutil.which("debugfs") or next(
        (p for p in ("/sbin/debugfs", "/usr/sbin/debugfs") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        raise InjectError("debugfs not found: install e2fsprogs")
    return exe


def _check_ext(image: Path, offset: int) -> None:
    with open(image, "rb") as f:
        f.seek(offset + _SB_OFFSET + 56)
        raw = f.read(2)
    if len(raw) != 2 or struct.unpack("<H", raw)[0] != EXT_MAGIC:
        where = f"partition at byte {offset} of {image}" if offset else str(image)
        raise InvalidInput(f"{where} is not an ext4 filesystem (no ext2/3/4 superblock)")


def locate(image: Path, partition: int | None) -> int:
    """The byte offset of the filesystem in ``image``, after every check; refuses early."""
    if not image.is_file():
        raise InvalidInput(f"image {image} is not a regular file")
    offset = 0
    if partition is not None:
        if partition < 1:
            raise InvalidInput(f"partition numbers start at 1, not {partition}")
        with open(image, "rb") as f:
            offset = disk.find(f, partition, image.stat().st_size).offset
    _check_ext(image, offset)
    return offset


class _Fs:
    """debugfs on one filesystem (a file plus a byte offset)."""

    def __init__(self, image: Path, offset: int) -> None:
        self.exe = _debugfs()
        self.spec = f"{image}?offset={offset}" if offset else str(image)

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self.exe, *args, self.spec],
                input=stdin.encode() if stdin is not None else None,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InjectError("debugfs did not finish in time") from None

    def stat(self, path: str) -> tuple[str, int, int, int] | None:
        """(type, mode, uid, gid) of ``path`` (not following a final symlink), None if missing."""
        res = self.run("-R", f"stat {path}")
        text = res.stdout.decode(errors="replace")
        m = _TYPE.search(text)
        if m is None:
            err = res.stderr.decode(errors="replace")
            if "not found" in err:
                return None
            raise InjectError(f"debugfs cannot read {path}: {' '.join(err.split()[-8:])}")
        mode = _MODE.search(text)
        owner = _OWNER.search(text)
        return (
            m.group(1),
            int(mode.group(1), 8) if mode else DEFAULT_MODE,
            int(owner.group(1)) if owner else 0,
            int(owner.group(2)) if owner else 0,
        )

    def cat(self, path: str) -> bytes:
        res = self.run("-R", f"cat {path}")
        return res.stdout


def _plan(fs: _Fs, target: PurePosixPath) -> tuple[list[str], tuple[int, int, int] | None]:
    """Directories to create and the existing file's (mode, uid, gid); refuses symlinks."""
    missing: list[str] = []
    for parent in reversed(target.parents[:-1]):  # /etc, /etc/network (not /)
        st = None if missing else fs.stat(str(parent))
        if st is None:
            missing.append(str(parent))
        elif st[0] == "symlink":
            raise InvalidInput(f"{parent} is a symlink in the image: refusing a path that may escape")
        elif st[0] != "directory":
            raise InvalidInput(f"{parent} is not a directory in the image")
    existing = None if missing else fs.stat(str(target))
    if existing is not None:
        if existing[0] == "symlink":
            raise InvalidInput(f"{target} is a symlink in the image: refusing a path that may escape")
        if existing[0] != "regular":
            raise InvalidInput(f"{target} exists in the image and is not a regular file")
        return missing, existing[1:]
    return missing, None


def write_files(image: Path, files: Mapping[str, bytes], partition: int | None = None) -> list[Written]:
    """Write ``files`` (guest path -> content) into the image; returns what was written."""
    # A symlinked image is written where it points (renaming over the link would leave
    # the real image as it was).
    image = Path(image).resolve()
    targets = {guest_path(p): c for p, c in files.items()}
    offset = locate(image, partition)
    fs = _Fs(image, offset)
    plans = {t: _plan(fs, t) for t in targets}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{image.name}.", suffix=".inject", dir=image.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    staging = Path(tempfile.mkdtemp(prefix="novanet-inject-"))
    try:
        subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", "--preserve=mode,ownership", str(image), str(tmp)],
            check=True,
            capture_output=True,
        )
        work = _Fs(tmp, offset)
        script: list[str] = []
        written: list[Written] = []
        created: set[str] = set()
        for i, (target, content) in enumerate(targets.items()):
            missing, existing = plans[target]
            for d in missing:
                if d not in created:
                    script += [f"mkdir {d}", f"sif {d} mode 040755", f"sif {d} uid 0", f"sif {d} gid 0"]
                    created.add(d)
            mode, uid, gid = existing if existing is not None else (DEFAULT_MODE, 0, 0)
            local = staging / f"f{i}"
            local.write_bytes(content)
            script.append(f"cd {target.parent}")
            if existing is not None:
                script.append(f"rm {target.name}")
            script += [
                f"write {local} {target.name}",
                f"sif {target.name} mode 0100{mode & 0o7777:03o}",
                f"sif {target.name} uid {uid}",
                f"sif {target.name} gid {gid}",
                "cd /",
            ]
            written.append(Written(str(target), len(content), mode, uid, gid))
        res = work.run("-w", "-f", "-", stdin="\n".join(script) + "\n")
        if res.returncode != 0:
            raise InjectError(
                f"debugfs failed: {' '.join(res.stderr.decode(errors='replace').split())[:200]}"
            )
        for w, (target, content) in zip(written, targets.items(), strict=True):
            if work.cat(str(target)) != content:
                raise InjectError(f"{target} did not read back as written: image left unchanged")
            if work.stat(str(target)) != ("regular", w.mode, w.uid, w.gid):
                raise InjectError(f"{target} did not get its owner and mode: image left unchanged")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, image)
        return written
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        shutil.rmtree(staging, ignore_errors=True)
