"""Validation of every name and value that will reach the kernel or the database."""

from __future__ import annotations

import re
import uuid as uuidlib

from novanet.domain.errors import InvalidInput

_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
_PROJECT = re.compile(r"^[A-Za-z0-9_.\-@]{1,255}$")
_HOST = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_POOL = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_LABEL = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?$")


def interface_name(value: str, what: str = "interface") -> str:
    """A Linux interface name: 1..15 characters of [A-Za-z0-9_.-], not '.' or '..'."""
    if not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise InvalidInput(
            f"invalid {what} name {value!r}: use 1-15 characters of letters, digits, '_', '.', '-'"
        )
    return value


def project_id(value: str) -> str:
    if not _PROJECT.fullmatch(value):
        raise InvalidInput(f"invalid project id {value!r}: use 1-255 characters of letters, digits, '_.-@'")
    return value


def host_name(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise InvalidInput(
            f"invalid host name {value!r}: use 1-255 characters of letters, digits, '_', '.', '-'"
        )
    return value


def pool_name(value: str) -> str:
    if not _POOL.fullmatch(value):
        raise InvalidInput(
            f"invalid pool name {value!r}: use 1-255 characters of letters, digits, '_', '.', '-'"
        )
    return value


def label(value: str) -> str:
    if not _LABEL.fullmatch(value):
        raise InvalidInput(f"invalid label {value!r}: 1-255 printable characters")
    return value


def dns_hostname(value: str) -> str:
    """A single DNS label, as dnsmasq will hand it to the guest."""
    if not _HOSTNAME.fullmatch(value):
        raise InvalidInput(f"invalid hostname {value!r}: one DNS label of letters, digits and '-' (max 63)")
    return value


def instance_uuid(value: str) -> str:
    """Canonical lower-case form of an instance UUID."""
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"invalid instance uuid {value!r}: expected a UUID") from None


def network_uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"invalid network uuid {value!r}: expected a UUID") from None


def port(value: int, what: str = "port") -> int:
    if not 1 <= value <= 65535:
        raise InvalidInput(f"invalid {what} {value}: must be 1-65535")
    return value


INT32 = (-(2**31), 2**31 - 1)  # what every integer column holds on SQLite and PostgreSQL


def bounded(value: int, what: str, low: int = INT32[0], high: int = INT32[1]) -> int:
    """An integer the database can store, or one clear error (never an OverflowError)."""
    if not low <= value <= high:
        raise InvalidInput(f"invalid {what} {value}: must be {low}-{high}")
    return value
