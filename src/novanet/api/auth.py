"""Who is asking: the X-Auth-Token dependency, role checks, and the log of refusals.

A refusal (401, 403, or a 404 that hides another project's object) is logged with who
asked for what, so an operator can tell a misconfigured client from a probing one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from novanet.domain.errors import Forbidden, InvalidInput, NotFound, NovanetError, Unauthorized
from novanet.service.context import Ctx
from novanet.service.tokens import Principal, TokenCache

log = logging.getLogger("novanet.api.auth")


def get_ctx(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def _who(p: Principal | None, request: Request) -> str:
    client = request.client.host if request.client else "?"
    return f"{p.describe() if p else 'anonymous'} from {client}"


def refuse(request: Request, p: Principal | None, exc: NovanetError) -> NovanetError:
    """Log a refusal and hand the error back for raising."""
    log.warning("refused %s %s for %s: %s", request.method, request.url.path, _who(p, request), exc.message)
    return exc


async def principal(
    request: Request,
    x_auth_token: Annotated[str | None, Header(alias="X-Auth-Token", description="API token")] = None,
) -> Principal:
    """The caller: from this process's token cache when it verified the token a moment
    ago (no thread, no database), else looked up in a worker thread."""
    cache: TokenCache = request.app.state.token_cache
    p = cache.get(x_auth_token)
    if p is None:
        try:
            p = await asyncio.to_thread(cache.authenticate, get_ctx(request), x_auth_token)
        except Unauthorized as exc:
            raise refuse(request, None, exc) from None
    request.state.principal = p
    return p


Caller = Annotated[Principal, Depends(principal)]


def compute_caller(
    request: Request,
    project_id: Annotated[str, Path(description="The project of the token", max_length=255)],
    p: Caller,
) -> Principal:
    """Compute API: the URL's project must be the token's, as nova checked."""
    if project_id != p.project_id:
        raise refuse(
            request,
            p,
            InvalidInput(
                f"malformed request URL: URL's project_id {project_id!r} does not match"
                f" the token's project_id {p.project_id!r}"
            ),
        )
    return p


ComputeCaller = Annotated[Principal, Depends(compute_caller)]


def require_admin(request: Request, p: Principal, what: str) -> None:
    if not p.is_admin:
        raise refuse(request, p, Forbidden(f"policy does not allow {what}: admin only"))


def require_admin_or_service(request: Request, p: Principal, what: str) -> None:
    if not (p.is_admin or p.is_service):
        raise refuse(request, p, Forbidden(f"policy does not allow {what}: admin or service only"))


def check_owner(request: Request, p: Principal, owner: str | None, what: str) -> None:
    """A member sees only its own project's objects; another project's is 'not found'."""
    if p.is_admin or owner == p.project_id:
        return
    raise refuse(request, p, NotFound(f"{what} not found"))


def scope(p: Principal) -> str | None:
    """The project a caller acts within: None (all) for admins."""
    return None if p.is_admin else p.project_id
