"""`novanet inject` into real ext4 images made by mkfs.ext4 (whole disk, MBR and GPT
partitions) and a real ISO config drive, read back with debugfs and isoinfo; refusals
leave the image's bytes unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest
from hostlab import NOVANET

INSTANCE = str(uuidlib.uuid4())


def run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("mkfs.ext4", "debugfs", "sfdisk", "genisoimage", "isoinfo"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh (e2fsprogs, fdisk, genisoimage)")
    d = tmp_path_factory.mktemp("inject")
    path = d / "novanet.conf"
    path.write_text(
        "[DEFAULT]\nnetwork_manager = flat\nflat_network_bridge = br100\nflat_injected = True\n"
        f"state_path = {d}/state\nhost = c1\n"
    )
    nv = [NOVANET, "--config-file", str(path)]
    run(*nv, "network", "create", "--label", "a", "--fixed-range-v4", "10.61.0.0/24", "--dns1", "192.0.2.53")
    run(*nv, "network", "create", "--label", "b", "--fixed-range-v4", "10.62.0.0/24", "--bridge", "br101")
    run(*nv, "instance", "allocate", INSTANCE, "--project-id", "p", "--host", "c1", "--hostname", "vm1")
    return path


def novanet(conf: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(NOVANET, "--config-file", str(conf), *args, check=check)


def rendered(conf: Path, tmp_path: Path) -> str:
    root = tmp_path / "root"
    root.mkdir()
    out = json.loads(novanet(conf, "inject", INSTANCE, "--root", str(root), "--json").stdout)
    text = (root / "etc/network/interfaces").read_text()
    assert out["interfaces"] == text
    return text


def debugfs(image: Path, cmd: str, offset: int = 0) -> str:
    spec = f"{image}?offset={offset}" if offset else str(image)
    return run("debugfs", "-R", cmd, spec).stdout


def mkfs(path: Path, size: str = "8M") -> None:
    run("truncate", "-s", size, str(path))
    run("mkfs.ext4", "-q", "-F", str(path))


def test_whole_disk_image_reads_back_exactly(conf: Path, tmp_path: Path) -> None:
    want = rendered(conf, tmp_path)
    assert "auto eth0\niface eth0 inet static\n    address 10.61.0." in want
    assert "auto eth1\niface eth1 inet static\n    address 10.62.0." in want
    image = tmp_path / "disk.img"
    mkfs(image)
    novanet(conf, "inject", INSTANCE, "--image", str(image))
    assert debugfs(image, "cat /etc/network/interfaces") == want
    st = debugfs(image, "stat /etc/network/interfaces")
    assert "Type: regular" in st and "Mode:  0644" in st and "User:     0   Group:     0" in st
    # Twice: the file is replaced, and an existing file keeps its mode.
    run("debugfs", "-w", "-R", "sif /etc/network/interfaces mode 0100600", str(image))
    novanet(conf, "inject", INSTANCE, "--image", str(image))
    assert debugfs(image, "cat /etc/network/interfaces") == want
    assert "Mode:  0600" in debugfs(image, "stat /etc/network/interfaces")
    assert run("e2fsck", "-fn", str(image), check=False).returncode == 0
    # Through a symlink, the image it points to is written (the link stays a link).
    link = tmp_path / "link.img"
    link.symlink_to(image)
    run("debugfs", "-w", "-R", "rm /etc/network/interfaces", str(image))
    novanet(conf, "inject", INSTANCE, "--image", str(link))
    assert link.is_symlink() and debugfs(image, "cat /etc/network/interfaces") == want


@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_partition_of_a_disk(conf: Path, tmp_path: Path, label: str) -> None:
    want = rendered(conf, tmp_path)
    part = tmp_path / "part.img"
    mkfs(part, "6M")
    image = tmp_path / "disk.img"
    run("truncate", "-s", "16M", str(image))
    run("sfdisk", "-q", str(image), input=f"label: {label}\nstart=2048, size=4096\nstart=8192, size=12288\n")
    run("dd", f"if={part}", f"of={image}", "bs=512", "seek=8192", "conv=notrunc", "status=none")
    before_p1 = hashlib.sha256(image.read_bytes()[2048 * 512 : 6144 * 512]).hexdigest()
    novanet(conf, "inject", INSTANCE, "--image", str(image), "--partition", "2")
    assert debugfs(image, "cat /etc/network/interfaces", offset=8192 * 512) == want
    assert hashlib.sha256(image.read_bytes()[2048 * 512 : 6144 * 512]).hexdigest() == before_p1


def test_refusals_leave_the_image_unchanged(conf: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"not a filesystem\n" * 100000)
    digest = sha(junk)
    res = novanet(conf, "inject", INSTANCE, "--image", str(junk), check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not an ext4 filesystem" in res.stderr
    assert sha(junk) == digest

    image = tmp_path / "disk.img"
    run("truncate", "-s", "16M", str(image))
    run("sfdisk", "-q", str(image), input="label: dos\nstart=2048, size=8192\n")
    digest = sha(image)
    res = novanet(conf, "inject", INSTANCE, "--image", str(image), "--partition", "3", check=False)
    assert res.returncode == 2 and "no partition 3" in res.stderr and res.stderr.count("\n") == 1
    res = novanet(conf, "inject", INSTANCE, "--image", str(image), "--partition", "1", check=False)
    assert res.returncode == 2 and "not an ext4 filesystem" in res.stderr  # partition 1 is empty
    assert sha(image) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img", "junk.img"]  # no temporary left


def test_symlink_in_the_image_is_refused(conf: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    mkfs(image)
    run("debugfs", "-w", "-R", "symlink /etc /host-etc", str(image))
    digest = sha(image)
    res = novanet(conf, "inject", INSTANCE, "--image", str(image), check=False)
    assert res.returncode == 2 and "symlink" in res.stderr
    assert sha(image) == digest


def test_config_drive(conf: Path, tmp_path: Path) -> None:
    iso = tmp_path / "config.iso"
    novanet(conf, "inject", INSTANCE, "--config-drive", str(iso))
    assert "Volume id: config-2" in run("isoinfo", "-d", "-i", str(iso)).stdout
    nd = json.loads(run("isoinfo", "-R", "-i", str(iso), "-x", "/openstack/latest/network_data.json").stdout)
    md = json.loads(run("isoinfo", "-R", "-i", str(iso), "-x", "/openstack/latest/meta_data.json").stdout)
    assert md["uuid"] == INSTANCE and md["hostname"] == "vm1"
    show = json.loads(novanet(conf, "instance", "show", INSTANCE, "--json").stdout)
    macs = [v["address"] for v in show["network_info"]]
    assert [link["ethernet_mac_address"] for link in nd["links"]] == macs
    fixed = show["network_info"][0]["network"]["subnets"][0]["ips"][0]["address"]
    assert nd["networks"][0]["ip_address"] == fixed and nd["networks"][0]["type"] == "ipv4"
    assert {"type": "dns", "address": "192.0.2.53"} in nd["services"]


def test_no_injected_network_is_refused(conf: Path, tmp_path: Path) -> None:
    other = str(uuidlib.uuid4())
    novanet(
        conf, "network", "create", "--label", "c", "--fixed-range-v4", "10.63.0.0/24",
        "--bridge", "br102", "--no-injected", "--project-id", "q",
    )  # fmt: skip
    # Flat mode: the instance joins every network open to its project, so give it only c.
    nets = json.loads(novanet(conf, "network", "list", "--json").stdout)
    c_uuid = next(n["uuid"] for n in nets if n["label"] == "c")
    novanet(conf, "instance", "allocate", other, "--project-id", "q", "--host", "c1", "--network", c_uuid)
    image = tmp_path / "disk.img"
    mkfs(image)
    digest = sha(image)
    res = novanet(conf, "inject", other, "--image", str(image), check=False)
    assert res.returncode == 2 and "no injected network" in res.stderr
    assert sha(image) == digest
