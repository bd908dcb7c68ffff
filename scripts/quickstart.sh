#!/usr/bin/env bash
# The README's first command: set the machine up, then build a whole FlatDHCP cloud on
# this machine with `novanet sandbox up` -- an outside network, a network host and two
# compute hosts in network namespaces (the root namespace is never touched), one real
# `novanet agent` per host, a SQLite database under $state_path/sandbox/demo, two
# instances that take their DHCP leases from dnsmasq, and a floating IP each.
#
# Idempotent: when the sandbox `demo` is already up, it says so and shows its status
# instead of building a second one (`novanet sandbox down` removes it).
# Env: NOVANET_STATE_PATH (default /var/lib/novanet), QUICKSTART_NAME (the sandbox's
# name, default demo), QUICKSTART_ARGS (extra `sandbox up` options, e.g. "--guest qemu"
# or "--multi-host --hosts 3").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh

if [[ $EUID -ne 0 ]]; then
    echo "quickstart: the sandbox needs root (it makes network namespaces)" >&2
    exit 1
fi

NV=(.venv/bin/novanet)
if [[ -n "${NOVANET_STATE_PATH:-}" ]]; then
    mkdir -p "$NOVANET_STATE_PATH"
    CONF="$NOVANET_STATE_PATH/quickstart.conf"
    printf '[DEFAULT]\nstate_path = %s\n' "$NOVANET_STATE_PATH" >"$CONF"
    NV+=(--config-file "$CONF")
fi

NAME="${QUICKSTART_NAME:-demo}"
if "${NV[@]}" sandbox status --name "$NAME" >/dev/null 2>&1; then
    echo "quickstart: the sandbox $NAME is already up:"
    "${NV[@]}" sandbox status --name "$NAME"
    echo
    echo "remove it with: ${NV[*]} sandbox down --name $NAME"
    exit 0
fi

# shellcheck disable=SC2086 # QUICKSTART_ARGS is a list of options
"${NV[@]}" sandbox up --name "$NAME" --manager flatdhcp ${QUICKSTART_ARGS:-}
echo
echo "more to try:"
echo "  VLAN mode with the project's VPN: ${NV[*]} sandbox up --name vlan --manager vlan  (prints the .ovpn and the openvpn command)"
echo "  Flat mode, addresses injected:   ${NV[*]} sandbox up --name flat --manager flat"
echo "  real virtual machines (qemu):    ${NV[*]} sandbox up --name vms --guest qemu"
echo "  (each sandbox goes with:         ${NV[*]} sandbox down --name NAME)"
echo "quickstart: ok"
