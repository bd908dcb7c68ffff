"""`novanet sandbox`: a whole cloud on this machine, in network namespaces (root)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated, Any

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import state
from novanet.domain.errors import InvalidInput

app = typer.Typer(
    help="A whole cloud on this machine: outside network, network host, compute hosts, agents,"
    " instances (namespaces or qemu guests) and floating IPs, all in network namespaces."
)

Name = Annotated[str, option("--name", metavar="NAME", help="Name of the sandbox (1-12 of a-z0-9).")]


def _say(msg: str) -> None:
    sys.stderr.write(f"sandbox: {msg}\n")
    sys.stderr.flush()


def _state_path(ctx: typer.Context) -> str:
    return state(ctx).config().state_path


@app.command("up")
def up(
    ctx: typer.Context,
    manager: Annotated[
        str, option("--manager", metavar="MANAGER", help="Network manager: flat, flatdhcp or vlan.")
    ] = "flatdhcp",
    multi_host: Annotated[
        bool, option("--multi-host", help="Every compute host is gateway, DHCP and NAT for its instances.")
    ] = False,
    hosts: Annotated[int, option("--hosts", metavar="N", help="Compute hosts (1-8).")] = 2,
    instances: Annotated[int, option("--instances", metavar="N", help="Instances, spread over hosts.")] = 2,
    guest: Annotated[
        str, option("--guest", metavar="KIND", help="netns (a namespace per instance) or qemu (real VMs).")
    ] = "netns",
    name: Name = "demo",
    db: Annotated[
        str | None,
        option(
            "--db",
            metavar="URL",
            help="PostgreSQL server (postgresql+psycopg://...) to hold the sandbox's own database"
            " novanet_sandbox_NAME, dropped by down [SQLite in the state directory].",
        ),
    ] = None,
    as_json: Annotated[bool, option("--json", help="Print what was built as JSON.")] = False,
) -> None:
    """Build a sandbox cloud and print how to reach its instances."""
    from novanet.domain.modes import mode_from_name
    from novanet.sandbox import build

    mode = mode_from_name(manager)
    if guest not in ("netns", "qemu"):
        raise InvalidInput(f"--guest {guest!r}: netns or qemu")
    sb = build.up(
        _state_path(ctx), name, mode.name, multi_host=multi_host, hosts=hosts, instances=instances,
        guest=guest, say=_say, db=db,
    )  # fmt: skip
    if as_json:
        output.emit_json(_summary(sb))
        return
    _print_summary(sb, _prefix(ctx), "" if name == "demo" else f" --name {name}")


def _prefix(ctx: typer.Context) -> str:
    """How to call novanet for this sandbox again: the same --config-file options."""
    return "novanet" + "".join(f" --config-file {f}" for f in state(ctx).config_files)


def _summary(sb: Any) -> dict[str, Any]:
    p = sb.plan
    return {
        "name": p.name,
        "manager": p.manager,
        "multi_host": p.multi_host,
        "guest": p.guest,
        "segmentation": p.segmentation if p.mode.vlan else None,
        "state_dir": str(sb.root),
        "database": sb.state.get("pg_database") or sb.state.get("db"),
        "config": str(sb.conf("net")),
        "outside": {"namespace": p.outside_ns, "address": "203.0.113.254"},
        "hosts": [
            {"host": h.name, "namespace": h.ns, "public_ip": h.public_ip, "compute": h.compute}
            for h in p.hosts
        ],
        "instances": [
            {"name": n, **v, "namespace": next((i.ns for i in p.instances if i.name == n), "")}
            for n, v in sb.state.get("instances", {}).items()
        ],
        "vpn": _vpn_summary(sb),
        "build_seconds": sb.state.get("build_seconds"),
    }


def _vpn_summary(sb: Any) -> dict[str, Any] | None:
    """VLAN mode: the project's VPN and how to connect to it from the outside namespace."""
    v = sb.state.get("vpn")
    if not v or "client_config" not in v:
        return None
    out = sb.plan.outside_ns
    return {
        "project": v["project"],
        "host": v["host"],
        "public_ip": v["public_ip"],
        "public_port": v["public_port"],
        "internal_ip": v["internal_ip"],
        "state": v["state"],
        "user": v["user"],
        "client_config": v["client_config"],
        "client_addresses": v["clients"],
        "connect": f"ip netns exec {out} openvpn --config {v['client_config']}",
    }


def _print_summary(sb: Any, nv: str, opt: str) -> None:
    s = _summary(sb)
    seg = f", segments over {s['segmentation']}" if s["segmentation"] else ""
    mh = "multi-host" if s["multi_host"] else "single network host"
    output.message(
        f"sandbox {s['name']} is up in {s['build_seconds']}s: {s['manager']}, {mh}{seg}, {s['guest']} guests"
    )
    output.table(
        ("host", "namespace", "public_ip", "role"),
        [
            [h["host"], h["namespace"], h["public_ip"], "compute" if h["compute"] else "network"]
            for h in s["hosts"]
        ],
    )
    output.message("")
    output.table(
        ("instance", "host", "fixed_ip", "floating_ip", "uuid"),
        [[i["name"], i["host"], i["fixed_ip"], i["floating_ip"], i["uuid"]] for i in s["instances"]],
    )
    first = s["instances"][0] if s["instances"] else None
    output.message("")
    output.message(f"outside: namespace {s['outside']['namespace']} ({s['outside']['address']})")
    output.message("try:")
    if first:
        output.message(f"  {nv} sandbox exec{opt} {first['name']} -- ping -c 1 {s['outside']['address']}")
        if len(s["instances"]) > 1:
            second = s["instances"][1]["fixed_ip"]
            output.message(f"  {nv} sandbox exec{opt} {first['name']} -- ping -c 1 {second}")
        output.message(f"  ip netns exec {s['outside']['namespace']} ping -c 1 {first['floating_ip']}")
        if s["guest"] == "qemu":
            output.message(f"  {nv} sandbox console{opt} {first['name']}")
    output.message(f"  novanet --config-file {s['config']} fixed list   (or floating list, service list)")
    output.message(f"  {nv} sandbox status{opt}")
    output.message(f"  {nv} sandbox down{opt}")
    vpn = s["vpn"]
    if vpn:
        output.message("")
        output.message(
            f"VPN of project {vpn['project']}: {vpn['state']} on {vpn['public_ip']}:{vpn['public_port']}/udp"
            f" (appliance on {vpn['host']}, {vpn['internal_ip']}); client config of user {vpn['user']}:"
            f" {vpn['client_config']}"
        )
        if vpn["state"] != "running":
            output.message("  (its appliance starts once an instance brings the network to its host)")
        output.message("connect from the outside (in a second terminal, leave it running):")
        output.message(f"  {vpn['connect']}")
        if first:
            output.message("then the instances answer on their fixed IPs from the outside:")
            output.message(f"  ip netns exec {s['outside']['namespace']} ping -c 1 {first['fixed_ip']}")


@app.command("status")
def status(
    ctx: typer.Context,
    name: Name = "demo",
    as_json: Annotated[bool, option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Hosts, agents up or down, instances, leases, floating IPs and (VLAN) the VPN of a sandbox."""
    from novanet.sandbox import build

    sb = build.Sandbox.load(build.sandbox_root(_state_path(ctx), name))
    s = _summary(sb)
    services = {r["host"]: r for r in sb.nv_json("service", "list")}
    fixed = {r["address"]: r for r in sb.nv_json("fixed", "list") if r["instance_uuid"]}
    floating = {r["address"]: r for r in sb.nv_json("floating", "list")}
    s["status"] = sb.state.get("status")
    for h in s["hosts"]:
        svc = services.get(h["host"], {})
        h["agent"] = svc.get("state", "unknown")
        h["last_heartbeat"] = svc.get("last_heartbeat")
    for i in s["instances"]:
        i["leased"] = bool(fixed.get(i["fixed_ip"], {}).get("leased"))
        fl = floating.get(i["floating_ip"] or "", {})
        i["floating_associated"] = fl.get("fixed_address") == i["fixed_ip"] if fl else False
    if s["vpn"]:
        # `vpn list`, probed from the outside namespace, where the VPN's users are
        rows = [r for r in sb.vpn_list() if r["project_id"] == s["vpn"]["project"]]
        s["vpn"]["state"] = rows[0]["state"] if rows else "absent"
    if as_json:
        output.emit_json(s)
        return
    output.message(
        f"sandbox {s['name']}: {s['status']} ({s['manager']}, {s['guest']} guests) in {s['state_dir']}"
    )
    output.table(
        ("host", "namespace", "public_ip", "agent", "last_heartbeat"),
        [[h["host"], h["namespace"], h["public_ip"], h["agent"], h["last_heartbeat"]] for h in s["hosts"]],
    )
    output.message("")
    output.table(
        ("instance", "host", "fixed_ip", "leased", "floating_ip", "uuid"),
        [
            [i["name"], i["host"], i["fixed_ip"], i["leased"], i["floating_ip"], i["uuid"]]
            for i in s["instances"]
        ],
    )
    if s["vpn"]:
        v = s["vpn"]
        output.message("")
        output.message(
            f"VPN of project {v['project']}: {v['state']} on {v['public_ip']}:{v['public_port']}/udp"
            f" (appliance on {v['host']}); connect: {v['connect']}"
        )


def _instance(sb: Any, ref: str) -> tuple[str, dict[str, Any]]:
    for n, v in sb.state.get("instances", {}).items():
        if ref in (n, v["uuid"]):
            return n, v
    raise InvalidInput(f"sandbox {sb.plan.name} has no instance {ref!r}")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="vm1, vm2 ... or the instance UUID.")],
    cmd: Annotated[
        list[str], typer.Argument(metavar="-- CMD...", help="The command to run in the instance.")
    ],
    name: Name = "demo",
) -> None:
    """Run a command in an instance (its namespace, or a qemu guest's console); its exit code."""
    from novanet.sandbox import build

    sb = build.Sandbox.load(build.sandbox_root(_state_path(ctx), name))
    inst_name, _ = _instance(sb, instance)
    p = sb.plan
    if not cmd:
        raise InvalidInput("give the command after --")
    if p.guest == "qemu":
        from novanet.sandbox import guest

        code, out = guest.exec_in(sb, inst_name, cmd)
        sys.stdout.write(out)
        raise typer.Exit(code)
    ns = next(i.ns for i in p.instances if i.name == inst_name)
    raise typer.Exit(subprocess.call(["ip", "netns", "exec", ns, *cmd]))


@app.command("console")
def console(
    ctx: typer.Context,
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="vm1, vm2 ... or the instance UUID.")],
    name: Name = "demo",
) -> None:
    """Attach to a qemu guest's serial console (leave with Ctrl-]); prints its log when not a terminal."""
    from novanet.sandbox import build, guest

    sb = build.Sandbox.load(build.sandbox_root(_state_path(ctx), name))
    inst_name, _ = _instance(sb, instance)
    if sb.plan.guest != "qemu":
        raise InvalidInput("console is for qemu guests; use `novanet sandbox exec INSTANCE -- sh`")
    guest.console(sb, inst_name)


@app.command("down")
def down(ctx: typer.Context, name: Name = "demo") -> None:
    """Remove a sandbox: its processes, namespaces (links, nftables) and state directory."""
    from novanet.sandbox import build

    done = build.down(_state_path(ctx), name, _say)
    more = " ..." if len(done) > 6 else ""
    output.message(f"sandbox {name} is down: removed {len(done)} things ({', '.join(done[:6])}{more})")
