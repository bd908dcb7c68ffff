#!/usr/bin/env bash
# The main job on the embedded default (SQLite): set the machine up, then run the
# network service end to end on this machine:
#   1. control plane: a FlatDHCP network, an instance, a floating IP (SQLite database
#      at $state_path/novanet.sqlite, created and migrated on first use);
#   2. host side, inside network namespaces made for the demo (the root namespace is
#      never touched): `novanet agent` builds br100, dnsmasq and the nftables tables in a
#      "host" namespace, `novanet vif plug` wires an "instance" namespace to it, and a
#      real DHCP client there gets exactly the address novanet chose.
# Idempotent: run it again and it reuses the network and the pool.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh

STATE="${NOVANET_STATE_PATH:-/var/lib/novanet}"
mkdir -p "$STATE" && chmod 0755 "$STATE"
CONF="$STATE/quickstart.conf"
if [[ ! -f "$CONF" ]]; then
    cat >"$CONF" <<CONF
[DEFAULT]
# A nova.conf of the Grizzly era works as it is; these are the options this demo needs.
network_manager = nova.network.manager.FlatDHCPManager
flat_network_bridge = br100
public_interface = pub0
my_ip = 192.0.2.1
host = demo-host
network_host = demo-host
state_path = $STATE
force_dhcp_release = True
CONF
fi
nv() { .venv/bin/novanet --config-file "$CONF" "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "database (SQLite under $STATE)"
nv db sync
if ! nv network list --json | grep -q '"cidr": "10.90.0.0/24"'; then
    nv network create --label demo --fixed-range-v4 10.90.0.0/24
fi
if ! nv floating list --json | grep -q '"address": "192.0.2.100"'; then
    nv floating create --ip-range 192.0.2.96/28 --interface pub0
fi
nv network list

UUID="$(.venv/bin/python -c 'import uuid; print(uuid.uuid4())')"
say "allocate instance $UUID"
nv instance allocate "$UUID" --project-id demo --host demo-host --hostname demo
FIP="$(nv floating allocate --project-id demo --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["address"])')"
nv floating associate "$FIP" --instance "$UUID"
nv instance show "$UUID"

if [[ $EUID -ne 0 ]]; then
    echo "not root: skipping the host side (it needs network namespaces)"
    exit 0
fi

say "host side in namespaces nnq-host / nnq-vm"
HOST_NS="nnq-host-$$" VM_NS="nnq-vm-$$"
cleanup() {
    for pid_file in "$STATE"/networks/demo-host/*/pid; do
        [[ -f "$pid_file" ]] || continue
        pid="$(cat "$pid_file")"
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dnsmasq.*$pid_file"; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    ip netns del "$VM_NS" 2>/dev/null || true
    ip netns del "$HOST_NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$HOST_NS"
ip netns add "$VM_NS"
ip netns exec "$HOST_NS" ip link set lo up
ip netns exec "$HOST_NS" ip link add pub0 type veth peer name pubx
ip netns exec "$HOST_NS" ip link set pub0 up
ip netns exec "$HOST_NS" ip addr add 192.0.2.1/24 dev pub0

ip netns exec "$HOST_NS" .venv/bin/novanet --config-file "$CONF" agent --host demo-host --once
ip netns exec "$HOST_NS" .venv/bin/novanet --config-file "$CONF" vif plug "$UUID" --netns "$VM_NS"
LEASE="$(ip netns exec "$VM_NS" busybox udhcpc -i eth0 -n -q -f -t 10 -T 1 -s /bin/true 2>&1 | sed -n 's/.*lease of \([0-9.]*\) obtained.*/\1/p' | tail -n1)"
WANT="$(nv instance show "$UUID" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["network_info"][0]["network"]["subnets"][0]["ips"][0]["address"])')"
echo "DHCP lease in the instance namespace: ${LEASE:-none} (novanet allocated $WANT)"
ip netns exec "$HOST_NS" nft list table ip novanet | sed -n '/map floating-dnat/,/}/p'
ip netns exec "$HOST_NS" .venv/bin/novanet --config-file "$CONF" agent check --host demo-host

say "deallocate $UUID"
nv floating disassociate "$FIP"
nv floating release "$FIP"
nv instance deallocate "$UUID"
[[ "$LEASE" == "$WANT" ]] || { echo "quickstart: the DHCP lease differs from the allocation" >&2; exit 1; }
echo "quickstart: ok"
