"""The sandbox's plan (names, addresses, per-host nova.conf) and its reading of an
injected interfaces file, without building anything."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from novanet.config import load
from novanet.domain.errors import InvalidInput
from novanet.sandbox import ifaces
from novanet.sandbox import topology as T

UUIDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 6)]


def make(manager: str = "flatdhcp", **kw: object) -> T.Plan:
    args: dict[str, object] = {"multi_host": False, "hosts": 2, "instances": 3, "guest": "netns"}
    args.update(segmentation="vxlan", uuids=UUIDS)
    args.update(kw)
    return T.plan("demo", manager, **args)  # type: ignore[arg-type]


def test_plan_spreads_instances_and_names_namespaces() -> None:
    p = make()
    assert [h.name for h in p.hosts] == ["net", "c1", "c2"]
    assert [(i.name, i.host) for i in p.instances] == [("vm1", "c1"), ("vm2", "c2"), ("vm3", "c1")]
    assert p.namespaces[:3] == ["nvsb-demo-out", "nvsb-demo-und", "nvsb-demo-net"]
    assert all(n.startswith("nvsb-demo-") for n in p.namespaces)
    assert len({h.public_ip for h in p.hosts}) == 3
    assert T.Plan.from_json(p.to_json()) == p


def test_qemu_instances_have_no_namespace() -> None:
    p = make(guest="qemu", instances=2)
    assert [i.ns for i in p.instances] == ["", ""]
    assert p.namespaces == ["nvsb-demo-out", "nvsb-demo-und", "nvsb-demo-net", "nvsb-demo-c1", "nvsb-demo-c2"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hosts": 0}, "--hosts"),
        ({"hosts": 9}, "--hosts"),
        ({"instances": 17}, "--instances"),
        ({"instances": 5, "guest": "qemu"}, "--instances"),
        ({"guest": "xen"}, "--guest"),
    ],
)
def test_plan_refusals(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        make(**kw)


@pytest.mark.parametrize("name", ["", "Demo", "1abc", "a-b", "abcdefghijklm"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        T.check_name(name)


@pytest.mark.parametrize("manager", ["flat", "flatdhcp", "vlan"])
def test_host_configs_load(manager: str, tmp_path: Path) -> None:
    p = make(manager)
    for h in p.hosts:
        path = tmp_path / f"{h.name}.conf"
        path.write_text(T.host_config(p, h, tmp_path, "sqlite:////x/n.sqlite"))
        cfg = load([str(path)], {})
        assert cfg.host == h.name and cfg.network_manager.name == manager
        assert cfg.my_ip == h.public_ip and cfg.public_interface == "pub0"
        assert cfg.effective_network_host == "net"
        assert cfg.flat_injected is (manager == "flat")
        if manager == "vlan":
            assert cfg.vlan_segmentation == "vxlan" and cfg.effective_vxlan_local_ip == h.underlay_ip
        else:
            assert cfg.flat_interface == "und0"
        parsed = configparser.ConfigParser()
        parsed.read(path)
        assert parsed["database"]["connection"] == "sqlite:////x/n.sqlite"


def test_ifaces_commands_from_an_injected_file() -> None:
    text = (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address 10.90.0.2\n"
        "    netmask 255.255.255.0\n    broadcast 10.90.0.255\n    gateway 10.90.0.1\n"
        "    dns-nameservers 203.0.113.254\n\niface eth1 inet static\n    address 10.91.0.2\n"
        "    netmask 255.255.255.0\n"
    )
    assert ifaces.commands(text) == [
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "addr", "add", "10.90.0.2/24", "dev", "eth0"],
        ["ip", "route", "replace", "default", "via", "10.90.0.1"],
    ]  # eth1 is not "auto": left alone, as ifup -a does
    with pytest.raises(InvalidInput):
        ifaces.commands("auto eth0\niface eth0 inet static\n address 10.0.0.300\n netmask 255.255.255.0\n")


def test_wait_stops_at_once_on_a_fatal_failure() -> None:
    import time

    from novanet.sandbox import build

    def dead() -> bool:
        raise build.Fatal("agent c1 exited")

    t0 = time.monotonic()
    with pytest.raises(build.Fatal, match="exited"):
        build._wait(dead, 30, "agents")
    assert time.monotonic() - t0 < 1

    def flaky() -> bool:
        raise build.SandboxError("not yet")

    with pytest.raises(build.SandboxError, match=r"timed out after 0s waiting for x .*not yet"):
        build._wait(flaky, 0.3, "x", interval=0.05)
