"""`novanet agent`: the network service of one host, and its drift check."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import state
from novanet.config import check_supported

app = typer.Typer(
    help="The network service of this host: makes the kernel match the database (needs root).",
    invoke_without_command=True,
)

HostOpt = Annotated[
    str | None, option("--host", help="The host this agent acts for [the host option, or the hostname].")
]


@app.callback()
def agent(
    ctx: typer.Context,
    host: HostOpt = None,
    metrics_port: Annotated[
        int | None,
        option("--metrics-port", metavar="PORT", help="Serve Prometheus metrics on 127.0.0.1:PORT."),
    ] = None,
    once: Annotated[bool, option("--once", help="One full sync, then exit.")] = False,
    verbose: Annotated[bool, option("--verbose", "-v", help="Log every sync.")] = False,
) -> None:
    """Run the agent: a full sync at start, partial syncs as the database changes, drift
    repaired (a flushed ruleset, a deleted bridge, a killed dnsmasq) within seconds.

    It acts on the network namespace it runs in; several agents for different hosts can
    share a machine, each in its own namespace.
    """
    if ctx.invoked_subcommand is not None:
        ctx.meta["agent_host"] = host  # `novanet agent --host H check`
        return
    from novanet.agent.main import build_agent, run_agent

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s novanet-agent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    st = state(ctx)
    svc = st.ctx()
    check_supported(svc.config)
    name = host or svc.config.host
    built = build_agent(svc, name, st.config_files)
    if once:
        built.full_sync()
        output.message(f"synced host {name}")
        return
    underlay = svc.config.effective_vxlan_local_ip if svc.config.vlan_segmentation == "vxlan" else None
    run_agent(built, metrics_port=metrics_port, underlay=underlay)


@app.command("check")
def check(ctx: typer.Context, host: HostOpt = None) -> None:
    """Print every difference between this host and the database; exit 1 if any."""
    from novanet.agent.main import build_agent

    st = state(ctx)
    svc = st.ctx()
    check_supported(svc.config)
    name = host or ctx.meta.get("agent_host") or svc.config.host
    problems = build_agent(svc, name, st.config_files).check()
    for p in problems:
        output.message(p)
    if problems:
        raise typer.Exit(1)
    output.message(f"host {name} matches the database")
