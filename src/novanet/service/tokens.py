"""API tokens: created by an operator, bound to a project, stored only as a hash.

A token is a random secret handed out once (``novanet token create``); the database keeps
its sha256, so a copy of the database gives nobody a usable token. Roles: ``admin`` (every
project, admin-only operations), ``member`` (its own project), ``service`` (compute hosts:
the native allocate/deallocate for any project).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import tokens
from novanet.domain import names
from novanet.domain.errors import InvalidInput, NotFound, Unauthorized
from novanet.service.context import Ctx, run, utcnow

ROLES = ("admin", "member", "service")
PREFIX = "nvn_"
# An id an operator can type: the first characters of the hash (never the secret).
ID_LEN = 12

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Principal:
    """Who is asking: the project, the optional user name and the roles of its token."""

    project_id: str
    user: str | None
    roles: tuple[str, ...]
    token_id: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_service(self) -> bool:
        return "service" in self.roles

    def describe(self) -> str:
        who = f"user {self.user} of " if self.user else ""
        return f"{who}project {self.project_id} (token {self.token_id}, roles {','.join(self.roles)})"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_duration(text: str) -> dt.timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w``: a positive duration."""
    m = _DURATION.match(text)
    if m is None or int(m.group(1)) <= 0:
        raise InvalidInput(f"expiry {text!r}: expected a positive duration such as 3600, 30m, 12h or 7d")
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds > 100 * 365 * 86400:
        raise InvalidInput(f"expiry {text!r}: longer than a century")
    return dt.timedelta(seconds=seconds)


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _view(row: Any, now: dt.datetime) -> dict[str, Any]:
    state = "active"
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        state = "expired"
    return {
        "id": row.token_hash[:ID_LEN],
        "project_id": row.project_id,
        "user": row.user_name,
        "roles": row.roles.split(","),
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "state": state,
    }


def create(
    ctx: Ctx,
    project_id: str,
    *,
    user: str | None = None,
    role: str = "member",
    expires: str | None = None,
) -> dict[str, Any]:
    """A new token; the secret is in the answer (``token``) and nowhere else, ever."""
    names.project_id(project_id)
    if user is not None and (not user.strip() or len(user) > 255 or not user.isprintable()):
        raise InvalidInput(f"user {user!r}: expected 1-255 printable characters")
    if role not in ROLES:
        raise InvalidInput(f"role {role!r}: expected one of {', '.join(ROLES)}")
    ttl = parse_duration(expires) if expires is not None else None
    secret = PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(secret)

    def tx(conn: Connection) -> dict[str, Any]:
        now = utcnow().replace(microsecond=0)
        conn.execute(
            tokens.insert().values(
                token_hash=digest,
                project_id=project_id,
                user_name=user,
                roles=role,
                created_at=now,
                expires_at=now + ttl if ttl is not None else None,
            )
        )
        row = conn.execute(sa.select(tokens).where(tokens.c.token_hash == digest)).one()
        return _view(row, now)

    view = run(ctx, tx)
    return {"token": secret, **view}


def list_tokens(ctx: Ctx, project_id: str | None = None) -> list[dict[str, Any]]:
    """Every token (never a secret), oldest first."""
    if project_id is not None:
        names.project_id(project_id)

    def tx(conn: Connection) -> list[dict[str, Any]]:
        stmt = sa.select(tokens).order_by(tokens.c.id)
        if project_id is not None:
            stmt = stmt.where(tokens.c.project_id == project_id)
        now = utcnow()
        return [_view(r, now) for r in conn.execute(stmt)]

    return run(ctx, tx, write=False)


def _by_ref(ref: str) -> sa.ColumnElement[bool]:
    ref = ref.strip()
    if ref.startswith(PREFIX):
        return tokens.c.token_hash == hash_token(ref)
    if not re.fullmatch(r"[0-9a-f]{6,64}", ref):
        raise InvalidInput(f"token {ref!r}: expected a token id (see `novanet token list`) or the token")
    return tokens.c.token_hash.startswith(ref, autoescape=True)


def revoke(ctx: Ctx, ref: str) -> dict[str, Any]:
    """Revoke a token by its id (a prefix of at least 6 characters) or by the token itself.

    Idempotent: revoking a revoked token succeeds and keeps the first revocation time.
    """
    cond = _by_ref(ref)

    def tx(conn: Connection) -> tuple[dict[str, Any], str]:
        rows = conn.execute(sa.select(tokens).where(cond)).all()
        if not rows:
            raise NotFound(f"token {ref.strip()[:ID_LEN]} not found (see `novanet token list`)")
        if len(rows) > 1:
            raise InvalidInput(f"token id {ref} is ambiguous: {len(rows)} tokens start with it")
        row = rows[0]
        now = utcnow().replace(microsecond=0)
        if row.revoked_at is None:
            conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=now))
        return _view(conn.execute(sa.select(tokens).where(tokens.c.id == row.id)).one(), now), row.token_hash

    view, digest = run(ctx, tx)
    for cache in list(_CACHES):  # this process stops accepting it at once
        cache.forget(digest)
    return view


_LOOKUP = sa.select(
    tokens.c.token_hash,
    tokens.c.project_id,
    tokens.c.user_name,
    tokens.c.roles,
    tokens.c.expires_at,
    tokens.c.revoked_at,
).where(tokens.c.token_hash == sa.bindparam("h"))


def _digest(secret: str | None) -> str:
    if not secret:
        raise Unauthorized("authentication required: send a token in the X-Auth-Token header")
    if len(secret) > 512:
        raise Unauthorized("the token is not valid")
    return hash_token(secret)


def _check(ctx: Ctx, digest: str) -> tuple[Principal, dt.datetime | None]:
    row = run(ctx, lambda conn: conn.execute(_LOOKUP, {"h": digest}).first(), write=False)
    if row is None:
        raise Unauthorized("the token is not valid")
    if row.revoked_at is not None:
        raise Unauthorized(f"token {digest[:ID_LEN]} was revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized(f"token {digest[:ID_LEN]} has expired")
    p = Principal(row.project_id, row.user_name, tuple(row.roles.split(",")), digest[:ID_LEN])
    return p, row.expires_at


def authenticate(ctx: Ctx, secret: str | None) -> Principal:
    """The principal of a token; Unauthorized when missing, unknown, expired or revoked."""
    return _check(ctx, _digest(secret))[0]


# Every TokenCache of this process, so that a revocation made here reaches them all.
_CACHES: weakref.WeakSet[TokenCache] = weakref.WeakSet()


class TokenCache:
    """Tokens verified in the last ``ttl`` seconds, by hash: an API process checks a
    token against the database once per ``ttl``, not once per request.

    Only accepted tokens are kept (a refusal is always looked up again), never past the
    token's own expiry, and a revocation made in this process (``revoke``: the API, the
    CLI) drops the token at once. A token revoked by another process is still accepted
    here until its entry is ``ttl`` old (like Keystone's auth_token middleware cache).
    ``ttl`` 0: no cache.
    """

    MAX_ENTRIES = 10_000  # many more distinct tokens than this: start over

    def __init__(self, ttl: float) -> None:
        self.ttl = max(0.0, ttl)
        self._entries: dict[str, tuple[float, Principal]] = {}  # digest -> (deadline, principal)
        self._lock = threading.Lock()
        self._revocations = 0  # a lookup that overlapped a revocation is not kept
        self.hits = 0
        self.misses = 0
        _CACHES.add(self)

    def get(self, secret: str | None) -> Principal | None:
        """The principal of a token verified a moment ago, or None (check it)."""
        if not self.ttl or not secret or len(secret) > 512:
            return None
        entry = self._entries.get(hash_token(secret))
        if entry is None or entry[0] <= time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def authenticate(self, ctx: Ctx, secret: str | None) -> Principal:
        """``authenticate``, keeping what it accepted for at most ``ttl`` seconds."""
        digest = _digest(secret)
        seen = self._revocations
        p, expires_at = _check(ctx, digest)
        if self.ttl:
            keep = self.ttl
            if expires_at is not None:
                keep = min(keep, (expires_at - utcnow()).total_seconds())
            if keep > 0:
                with self._lock:
                    if self._revocations != seen:
                        return p  # it may have read the row before the revocation
                    if len(self._entries) >= self.MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[digest] = (time.monotonic() + keep, p)
        return p

    def forget(self, digest: str) -> None:
        with self._lock:
            self._revocations += 1
            self._entries.pop(digest, None)
