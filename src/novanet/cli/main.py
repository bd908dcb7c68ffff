"""The `novanet` command: global options, sub-commands, and the one error -> exit code map.

Exit codes: 0 success; a NovanetError's own exit_code (1-7, see domain/errors.py);
2 usage errors; 70 an unexpected internal error; 130 interrupted; 1, quietly, when the
reader of stdout went away (`novanet fixed list | head`), as click does.
Every error is one line on stderr: ``novanet: error: <message>``.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from novanet.cli.compute import inject, vif
from novanet.cli.network import fixed, floating, instances, networks, vpn
from novanet.cli.ops import admin, agent, api, sandbox, services, tokens
from novanet.cli.options import hide_aliases, option
from novanet.cli.state import State, state
from novanet.domain.errors import NovanetError

PROG = "novanet"
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 1

app = typer.Typer(
    name=PROG,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(admin.db_app, name="db")
app.add_typer(networks.app, name="network")
app.add_typer(fixed.app, name="fixed")
app.add_typer(floating.app, name="floating")
app.add_typer(instances.app, name="instance")
app.add_typer(vpn.app, name="vpn")
app.add_typer(agent.app, name="agent")
app.add_typer(vif.app, name="vif")
app.add_typer(tokens.app, name="token")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(services.app, name="service")
app.command("api")(api.api)
app.command("serve")(api.serve)
app.command("inject")(inject.inject)


@app.callback()
def _globals(
    ctx: typer.Context,
    config_file: Annotated[
        list[str] | None,
        option(
            "--config-file", metavar="FILE", help="nova.conf-style file to read (repeatable, later wins)."
        ),
    ] = None,
    db: Annotated[
        str | None,
        option("--db", metavar="URL", help="Database URL (sqlite:///PATH or postgresql+psycopg://...)."),
    ] = None,
    network_manager: Annotated[
        str | None,
        option("--network-manager", metavar="NAME", help="flat, flatdhcp or vlan [network_manager option]."),
    ] = None,
) -> None:
    """novanet: the network service of a cloud of virtual machines (nova-network's control plane).

    Networks with fixed IPs, floating IPs and the addresses of instances, kept in one
    database (SQLite or PostgreSQL) under the Flat, FlatDHCP or VLAN network manager.
    """
    st = state(ctx)
    st.config_files = list(config_file or [])
    st.db = db
    st.network_manager = network_manager


@functools.cache
def command() -> Any:
    """The click command tree of `app`, with the underscore aliases hidden from help."""
    cmd = typer.main.get_command(app)
    hide_aliases(cmd)
    return cmd


def _err(text: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(text.split())}\n")


def _usage_text(exc: Any) -> str:
    """Click's message, in the house style: lower case, no final period, where to get help."""
    if getattr(exc, "possibilities", None):
        # "Did you mean": suggest the documented spellings, not the hidden aliases.
        exc.possibilities = [p for p in exc.possibilities if "_" not in p] or exc.possibilities
    msg = " ".join(str(exc.format_message()).split()).rstrip(".")
    uctx = getattr(exc, "ctx", None)
    if msg == "Missing command" and uctx is not None:
        choices = ", ".join(uctx.command.list_commands(uctx))
        msg = f"missing command: one of {choices}"
    elif msg[:1].isupper() and not msg[1:2].isupper():
        msg = msg[0].lower() + msg[1:]
    if uctx is not None:
        msg += f" (see '{uctx.command_path} --help')"
    return msg


def _run(args: list[str], st: State) -> int:
    try:
        rv = command().main(args=args, prog_name=PROG, standalone_mode=False, obj=st)
    except NovanetError as exc:
        _err(exc.message)
        return exc.exit_code
    except typer.TyperException as exc:  # click's ClickException, UsageError, BadParameter ...
        code = getattr(exc, "exit_code", 1)
        _err(_usage_text(exc) if code == EXIT_USAGE else str(exc.format_message()))
        return code or 1
    except typer.Abort:
        _err("aborted")
        return 1
    # Non-standalone click returns the exit code of --help / typer.Exit, else the command's value.
    return rv if isinstance(rv, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `novanet` with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    st = State()
    try:
        code = _run(args, st)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader is gone; say nothing more (and let the exit-time flush be silent).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:
        # click exits by itself on EPIPE while a command writes; keep main() a function.
        return exc.code if isinstance(exc.code, int) else EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("NOVANET_DEBUG") == "1":
            traceback.print_exc()
        from novanet.db.outage import is_outage, unavailable

        if is_outage(exc):  # a database call outside a unit of work, during an outage
            down = unavailable(exc)
            _err(down.message)
            return down.exit_code
        detail = str(exc).strip().splitlines()
        first = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        sys.stderr.write(f"{PROG}: internal error: {first}\n")
        return EXIT_INTERNAL
    finally:
        st.close()


if __name__ == "__main__":
    sys.exit(main())
