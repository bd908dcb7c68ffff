"""Validation of names and values that reach the kernel, dnsmasq or the database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from novanet.domain import names
from novanet.domain.errors import InvalidInput


@pytest.mark.parametrize(
    "value",
    ["br100", "eth0", "vlan4094", "br-ex", "a_b.c", "a", "x" * 15, "eth0.100", "BR_100"],
)
def test_interface_names_accepted(value: str) -> None:
    assert names.interface_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 16,
        "verylongbridge01",
        "br 100",
        " br100",
        "br/0",
        "br;rm",
        "br$x",
        "br|x",
        "br&x",
        "br`x`",
        "br'x",
        'br"x',
        "br\tx",
        "br:0",
        "brü",
        ".",
        "..",
    ],
)
def test_interface_names_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="bridge name"):
        names.interface_name(value, "bridge")


@pytest.mark.parametrize(
    ("validator", "good"),
    [
        (names.interface_name, "br100"),
        (names.project_id, "proj-1"),
        (names.host_name, "compute-1"),
        (names.pool_name, "nova"),
        (names.label, "private net"),
        (names.dns_hostname, "server-1"),
    ],
)
def test_trailing_newline_refused(validator: Callable[[str], str], good: str) -> None:
    assert validator(good) == good
    with pytest.raises(InvalidInput):
        validator(good + "\n")


@pytest.mark.parametrize("value", ["p1", "admin@example.org", "a.b_c-d", "x" * 255])
def test_project_id_accepted(value: str) -> None:
    assert names.project_id(value) == value


@pytest.mark.parametrize("value", ["", "a b", "a/b", "a;b", "x" * 256, "p$1"])
def test_project_id_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="project id"):
        names.project_id(value)


@pytest.mark.parametrize("value", ["", "host one", "h;x", "h/x", "h@x"])
def test_host_name_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="host name"):
        names.host_name(value)


@pytest.mark.parametrize("value", ["", "my pool", "p;x", "p/x"])
def test_pool_name_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="pool name"):
        names.pool_name(value)


def test_label() -> None:
    assert names.label("net with spaces and ümlauts") == "net with spaces and ümlauts"
    for bad in ("", "a\x00b", "tab\there", "x" * 256, "a\x7fb"):
        with pytest.raises(InvalidInput, match="label"):
            names.label(bad)


@pytest.mark.parametrize("value", ["a", "server-1", "A0", "x" * 63])
def test_dns_hostname_accepted(value: str) -> None:
    assert names.dns_hostname(value) == value


@pytest.mark.parametrize("value", ["", "-a", "a-", "a.b", "a_b", "x" * 64, "a b"])
def test_dns_hostname_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="hostname"):
        names.dns_hostname(value)


def test_uuids_are_canonicalised() -> None:
    raw = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    assert names.instance_uuid(raw) == raw.lower()
    assert names.network_uuid("{" + raw + "}") == raw.lower()
    for bad in ("", "nope", "6f9619ff-8b86-d011-b42d-00c04fc964f"):
        with pytest.raises(InvalidInput, match="uuid"):
            names.instance_uuid(bad)
        with pytest.raises(InvalidInput, match="uuid"):
            names.network_uuid(bad)


def test_port() -> None:
    assert names.port(1) == 1
    assert names.port(65535) == 65535
    for bad in (0, -1, 65536):
        with pytest.raises(InvalidInput, match="VPN port"):
            names.port(bad, "VPN port")
