"""Partition tables of a raw disk image, read in Python: MBR primaries and GPT entries.

Only what injection needs: where partition N starts and how long it is, in bytes.
Logical partitions of an MBR extended partition are not followed (refused as missing).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from novanet.domain.errors import InvalidInput

SECTOR = 512
_MBR_SIG = b"\x55\xaa"
_GPT_SIG = b"EFI PART"
_GPT_PROTECTIVE = 0xEE
_EXTENDED = {0x05, 0x0F, 0x85}


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int  # bytes from the start of the disk
    size: int  # bytes


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _mbr(f: BinaryIO) -> list[Partition] | None:
    sector = _read(f, 0, SECTOR)
    if len(sector) < SECTOR or sector[510:512] != _MBR_SIG:
        return None
    parts: list[Partition] = []
    types = []
    for i in range(4):
        entry = sector[446 + 16 * i : 446 + 16 * (i + 1)]
        ptype = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        types.append(ptype)
        if ptype == 0 or count == 0 or ptype in _EXTENDED:
            continue
        parts.append(Partition(i + 1, start * SECTOR, count * SECTOR))
    if _GPT_PROTECTIVE in types:
        return _gpt(f)
    return parts


def _gpt(f: BinaryIO) -> list[Partition]:
    header = _read(f, SECTOR, 92)
    if header[:8] != _GPT_SIG:
        raise InvalidInput("the disk has a protective MBR but no GPT header")
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if not (128 <= entry_size <= 4096) or count > 1024:
        raise InvalidInput("the disk's GPT header is not plausible")
    table = _read(f, entries_lba * SECTOR, count * entry_size)
    parts = []
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if len(entry) < 56 or entry[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if last < first:
            continue
        parts.append(Partition(i + 1, first * SECTOR, (last - first + 1) * SECTOR))
    return parts


def partitions(f: BinaryIO) -> list[Partition]:
    """The partitions of a disk image ([] when it has no partition table)."""
    return _mbr(f) or []


def find(f: BinaryIO, number: int, disk_size: int) -> Partition:
    """Partition ``number`` (1-based) of the disk, which must lie inside the file."""
    for p in partitions(f):
        if p.number == number:
            if p.offset + p.size > disk_size:
                raise InvalidInput(f"partition {number} runs past the end of the image")
            return p
    raise InvalidInput(f"the image has no partition {number}")
