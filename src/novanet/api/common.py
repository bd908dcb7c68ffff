"""Helpers both APIs share: the Warning header for down agents, body model base."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Response
from pydantic import BaseModel, ConfigDict

from novanet.service import hosts
from novanet.service.context import Ctx


class Body(BaseModel):
    """Request bodies: unknown keys ignored (the original did), known ones typed."""

    model_config = ConfigDict(extra="ignore")


def warn_down(ctx: Ctx, response: Response, wanted: Iterable[str | None]) -> list[str]:
    """Name, in a ``Warning`` header, each host in ``wanted`` whose agent is down: the
    change is saved, but nothing makes it real there until that agent is back."""
    problems = hosts.agents_down(ctx, wanted)
    set_warning(response, problems)
    return problems


def set_warning(response: Response, problems: list[str]) -> None:
    """The ``Warning`` header naming ``problems`` (none: no header)."""
    if problems:
        response.headers["Warning"] = ", ".join(
            '199 novanet "{}"'.format(p.replace('"', "'")) for p in problems
        )
