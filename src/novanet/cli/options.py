"""Option helpers: nova-manage's underscore spellings as hidden aliases, T|F values.

Every multi-word option is declared with both spellings (``--fixed-range-v4`` and
nova-manage's ``--fixed_range_v4``) so the parser knows both; `hide_aliases` then drops
the underscore spelling from what --help and error messages show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

_TRUE = {"t", "true", "yes", "y", "1"}
_FALSE = {"f", "false", "no", "n", "0"}


def option(*names: str, **kwargs: Any) -> Any:
    """A typer.Option named ``names``, plus the underscore alias of each multi-word name."""
    decls: list[str] = []
    for name in names:
        decls.append(name)
        alias = "--" + name[2:].replace("-", "_") if name.startswith("--") else name
        if alias != name:
            decls.append(alias)
    # Typer's default metavar is the Python type ("<str>"); name the value instead.
    kwargs.setdefault("metavar", names[0].lstrip("-").replace("-", "_").upper())
    return typer.Option(*decls, **kwargs)


def true_false(value: str | None) -> bool | None:
    """Callback for T|F options (nova-manage's --multi_host T); also true/false/yes/no."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise typer.BadParameter(f"{value!r} is not T or F (also accepted: true, false, yes, no)")


def _is_alias(opt: str) -> bool:
    return opt.startswith("--") and "_" in opt


def _parser_with(param: Any, aliases: list[str], add_to_parser: Callable[..., None]) -> Callable[..., None]:
    def add(parser: Any, ctx: Any) -> None:
        shown = param.opts
        param.opts = shown + aliases
        try:
            add_to_parser(parser, ctx)
        finally:
            param.opts = shown

    return add


def hide_aliases(command: Any) -> None:
    """Keep underscore aliases working but out of --help and error messages (recursive)."""
    for param in command.params:
        if getattr(param, "param_type_name", None) != "option":
            continue
        aliases = [o for o in param.opts if _is_alias(o)]
        if not aliases:
            continue
        param.opts = [o for o in param.opts if not _is_alias(o)]
        # An instance attribute shadows the method only while building this run's parser.
        setattr(param, "add_to_parser", _parser_with(param, aliases, param.add_to_parser))  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        hide_aliases(sub)
