"""Typed errors with a stable code and a one-line message.

Entry points map them once: the CLI prints ``novanet: <message>`` and exits non-zero,
the API answers ``{code, message}`` with ``http_status``.
"""

from __future__ import annotations


class NovanetError(Exception):
    """Base of every error an operator or a tenant can cause."""

    code = "error"
    http_status = 400
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(NovanetError):
    code = "invalid_input"
    http_status = 400
    exit_code = 2


class NotFound(NovanetError):
    code = "not_found"
    http_status = 404
    exit_code = 3


class Conflict(NovanetError):
    code = "conflict"
    http_status = 409
    exit_code = 4


class CidrConflict(Conflict):
    code = "cidr_conflict"


class VlanConflict(Conflict):
    code = "vlan_conflict"


class AddressInUse(Conflict):
    code = "address_in_use"


class NetworkInUse(Conflict):
    code = "network_in_use"


class NoMoreFixedIps(Conflict):
    code = "no_more_fixed_ips"


class NoMoreFloatingIps(Conflict):
    code = "no_more_floating_ips"


class NoMoreNetworks(Conflict):
    code = "no_more_networks"


class Forbidden(NovanetError):
    code = "forbidden"
    http_status = 403
    exit_code = 5


class QuotaExceeded(Forbidden):
    code = "quota_exceeded"


class ConfigError(NovanetError):
    code = "config_error"
    exit_code = 6


class DatabaseError(NovanetError):
    code = "database_error"
    http_status = 503
    exit_code = 7


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached (down, restarting, failing over): try again later.
    The API answers 503 with Retry-After; agents keep the host as it is and retry."""

    code = "database_unavailable"
    retry_after = 5  # seconds, the API's Retry-After


class Unauthorized(NovanetError):
    """A request without a valid token (missing, unknown, expired or revoked)."""

    code = "unauthorized"
    http_status = 401
    exit_code = 5


class NotAssociated(NovanetError):
    """An address is not associated with the instance named (the original's 422)."""

    code = "not_associated"
    http_status = 422
    exit_code = 4


class NotImplementedYet(NovanetError):
    """A documented operation this version cannot do yet (the original's 501)."""

    code = "not_implemented"
    http_status = 501
    exit_code = 1
