"""qemu guests of a sandbox: real virtual machines under software emulation.

The guest is a small Linux prepared once and cached under ``$state_path/sandbox/.guest``:
Debian's cloud kernel and a busybox initramfs with the virtio modules, both taken from
Debian packages (`apt-get download` + `dpkg -x`, nothing installed on the machine). Its
init configures eth0 either from ``/etc/network/interfaces`` on its disk with
``ifup -a`` (Flat mode: the file `novanet inject` wrote; no DHCP server runs) or with a
DHCP client (FlatDHCP, VLAN), prints a ready line, then keeps a shell on the serial
console, which `sandbox exec` and `sandbox console` use through a Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from novanet.sandbox import procs
from novanet.sandbox.procs import SandboxError, run

KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX_PKG = "busybox-static"
MODULES = ("virtio_pci", "virtio_net", "virtio_blk")
READY = "NOVANET-GUEST-READY"
BOOT_TIMEOUT = 180.0  # seconds: software emulation on a busy 2-core machine

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /var/run /run /tmp /mnt /etc/network/if-pre-up.d /etc/network/if-up.d \
    /etc/network/if-down.d /etc/network/if-post-down.d
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m; done
ip link set lo up
hostname "$(sed -n 's/.*novanet.hostname=\([^ ]*\).*/\1/p' /proc/cmdline)"
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if grep -q 'novanet.net=disk' /proc/cmdline; then
    i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    mount -t ext4 -o ro /dev/vda /mnt
    echo "novanet-guest: network from the disk's /etc/network/interfaces:"
    cat /mnt/etc/network/interfaces
    ifup -a -i /mnt/etc/network/interfaces
else
    echo "novanet-guest: network from DHCP"
    udhcpc -i eth0 -s /udhcpc.sh -t 30 -T 2 -n -b
fi
echo "NOVANET-GUEST-READY $(ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9.]*\).*/\1/p' | head -n1)"
while :; do sh </dev/console >/dev/console 2>&1; done
"""

UDHCPC = r"""#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    echo "NOVANET-GUEST-LEASE $ip" ;;
esac
exit 0
"""


def _apt_download(names: list[str], into: Path) -> None:
    # _apt cannot write into a fresh root-only directory; let it.
    into.chmod(0o777)
    res = subprocess.run(
        ["apt-get", "download", "-q", *names], cwd=into, capture_output=True, text=True, timeout=600
    )
    if res.returncode != 0:
        raise SandboxError(
            f"apt-get download {' '.join(names)} failed: {' '.join(res.stderr.split())[-200:]}"
        )


def _kernel_package() -> str:
    out = run(["apt-cache", "depends", KERNEL_META])
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if m is None:
        raise SandboxError(f"cannot tell which kernel {KERNEL_META} depends on")
    return m.group(1)


def prepare(cache: Path, say: Any) -> Path:
    """The cached guest (vmlinuz, initrd.img), built on the first call."""
    if (cache / "vmlinuz").exists() and (cache / "initrd.img").exists():
        return cache
    for tool in ("apt-get", "apt-cache", "dpkg", "depmod", "modprobe", "cpio", "gzip", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool} is missing: run scripts/setup.sh")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        kpkg = _kernel_package()
        say(f"downloading {kpkg} and {BUSYBOX_PKG}")
        _apt_download([kpkg, BUSYBOX_PKG], work)
        kdir, bdir, init = work / "k", work / "b", work / "initramfs"
        for deb in work.glob("*.deb"):
            run(["dpkg", "-x", str(deb), str(bdir if "busybox" in deb.name else kdir)])
        [kver] = [p.name for p in (kdir / "lib" / "modules").iterdir()]
        run(["depmod", "-b", str(kdir), kver])
        order: list[str] = []
        (init / "lib" / "modules").mkdir(parents=True)
        for mod in MODULES:
            out = run(["modprobe", "-d", str(kdir), "-S", kver, "--show-depends", mod])
            for line in out.splitlines():
                parts = line.split()
                if parts and parts[0] == "insmod":
                    name = Path(parts[1]).name
                    if name not in order:
                        order.append(name)
                        shutil.copy(parts[1], init / "lib" / "modules" / name)
        (init / "lib" / "modules" / "order").write_text("\n".join(order) + "\n")
        for d in ("bin", "proc", "sys", "dev", "etc", "mnt"):
            (init / d).mkdir(exist_ok=True)
        shutil.copy(bdir / "bin" / "busybox", init / "bin" / "busybox")
        (init / "init").write_text(INIT)
        (init / "udhcpc.sh").write_text(UDHCPC)
        for f in ("init", "udhcpc.sh", "bin/busybox"):
            (init / f).chmod(0o755)
        initrd = work / "initrd.img"
        with open(initrd, "wb") as out_f:
            find = subprocess.Popen(["find", ".", "-print0"], cwd=init, stdout=subprocess.PIPE)
            cpio = subprocess.Popen(
                ["cpio", "--null", "-o", "-H", "newc", "--quiet"], cwd=init, stdin=find.stdout,
                stdout=subprocess.PIPE,
            )  # fmt: skip
            assert find.stdout is not None
            find.stdout.close()
            gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=out_f)
            assert cpio.stdout is not None
            cpio.stdout.close()
            if gz.wait() != 0 or cpio.wait() != 0 or find.wait() != 0:
                raise SandboxError("packing the initramfs failed")
        shutil.copy(kdir / "boot" / f"vmlinuz-{kver}", work / "vmlinuz")
        (work / "VERSION").write_text(f"{kpkg} {kver}\n")
        for f in ("VERSION", "initrd.img", "vmlinuz"):
            os.replace(work / f, cache / f)
        return cache
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _disk(sb: Any, name: str, uuid: str) -> Path:
    """A small ext4 disk holding the injected /etc/network/interfaces."""
    disk: Path = sb.root / "guests" / name / "disk.img"
    disk.parent.mkdir(parents=True, exist_ok=True)
    run(["truncate", "-s", "8M", str(disk)])
    run(["mkfs.ext4", "-q", "-F", "-L", name, str(disk)])
    sb.nv("inject", uuid, "--image", str(disk))
    return disk


def start_all(sb: Any, p: Any, cache: Path) -> None:
    """Plug a tap per instance (`novanet vif plug --tap`) and boot its guest in the
    compute host's namespace; wait until each reports its address."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise SandboxError("qemu-system-x86_64 is missing: run scripts/setup.sh")
    for inst in p.instances:
        info = sb.state["instances"][inst.name]
        host_ns = p.host(inst.host).ns
        sb.nv("vif", "plug", inst.uuid, "--tap", info["devname"], host=inst.host, ns=host_ns)
        gdir = sb.root / "guests" / inst.name
        gdir.mkdir(parents=True, exist_ok=True)
        sock, log = gdir / "console.sock", gdir / "console.log"
        append = f"console=ttyS0 panic=-1 novanet.hostname={inst.name}"
        drive: list[str] = []
        if not p.mode.dhcp:
            disk = _disk(sb, inst.name, inst.uuid)
            drive = ["-drive", f"file={disk},if=virtio,format=raw"]
            append += " novanet.net=disk"
        argv = [
            "ip", "netns", "exec", host_ns, qemu, "-accel", "tcg", "-m", "192", "-smp", "1",
            "-name", f"sandbox-{p.name}-{inst.name}", "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(cache / "vmlinuz"), "-initrd", str(cache / "initrd.img"), "-append", append,
            "-netdev", f"tap,id=n0,ifname={info['devname']},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={info['mac']}",
            "-chardev", f"socket,id=s0,path={sock},server=on,wait=off,logfile={log}",
            "-serial", "chardev:s0", "-no-reboot", *drive,
        ]  # fmt: skip
        rec = procs.spawn(argv, gdir / "qemu.log")
        rec["what"] = f"qemu {inst.name}"
        sb.state["processes"].append(rec)
        sb.state["instances"][inst.name]["console"] = str(sock)
        sb.save()
    for inst in p.instances:
        info = sb.state["instances"][inst.name]
        log = sb.root / "guests" / inst.name / "console.log"
        rec = next(r for r in sb.state["processes"] if r.get("what") == f"qemu {inst.name}")
        deadline = time.monotonic() + BOOT_TIMEOUT
        sb.say(f"booting {inst.name} (software emulation)")
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            m = re.search(rf"{READY} (\S*)", text)
            if m and m.group(1) == info["fixed_ip"]:
                break
            if m and not p.mode.dhcp:
                raise SandboxError(
                    f"{inst.name} came up with {m.group(1) or 'no address'}, not {info['fixed_ip']}"
                )
            if p.mode.dhcp and f"NOVANET-GUEST-LEASE {info['fixed_ip']}" in text:
                break
            if not procs.alive(rec):
                raise SandboxError(f"qemu of {inst.name} exited: see {log.parent}/qemu.log")
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{inst.name} did not configure {info['fixed_ip']} in {BOOT_TIMEOUT:.0f}s: see {log}"
                )
            time.sleep(0.5)


def _connect(sb: Any, name: str) -> socket.socket:
    path = sb.state["instances"][name].get("console")
    if not path:
        raise SandboxError(f"{name} has no console")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        s.close()
        raise SandboxError(f"cannot reach the console of {name}: {exc}") from None
    return s


def exec_in(sb: Any, name: str, cmd: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` in the guest's console shell; (exit code, output)."""
    import shlex

    token = secrets.token_hex(4)
    line = f"echo B{token}E; {shlex.join(cmd)}; echo R{token}=$?E\n"
    with contextlib.closing(_connect(sb, name)) as s:
        s.sendall(b"\n" + line.encode())
        buf = b""
        deadline = time.monotonic() + timeout
        begin = re.compile(rf"(^|\n)B{token}E\n".encode())
        end = re.compile(rf"R{token}=(\d+)E".encode())
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.5)
            if not r:
                continue
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            text = buf.replace(b"\r\n", b"\n").replace(b"\r", b"")
            b = begin.search(text)
            e = end.search(text, b.end()) if b else None
            if b and e:
                return int(e.group(1)), text[b.end() : e.start()].decode(errors="replace")
        raise SandboxError(f"no answer from {name}'s console in {timeout:.0f}s")


def console(sb: Any, name: str) -> None:
    """Relay the terminal to the guest's serial console until Ctrl-] (0x1d)."""
    if not sys.stdin.isatty():
        log = Path(sb.state["instances"][name]["console"]).with_name("console.log")
        sys.stdout.write(log.read_text(errors="replace") if log.exists() else "")
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    sys.stderr.write(f"console of {name}: leave with Ctrl-]\r\n")
    with contextlib.closing(_connect(sb, name)) as s:
        try:
            tty.setraw(fd)
            s.sendall(b"\n")
            while True:
                r, _, _ = select.select([s, fd], [], [])
                if s in r:
                    data = s.recv(65536)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if fd in r:
                    data = os.read(fd, 1024)
                    if b"\x1d" in data:
                        break
                    s.sendall(data)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    sys.stderr.write("\n")
