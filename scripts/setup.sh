#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root) for development and CI:
#   * system packages (only touches apt when something is missing),
#   * .venv at the repo root with `pip install -e '.[dev]'`.
# Idempotent and fast on re-runs. Works from any cwd.
# Env: NOVANET_SETUP_FORCE=1 forces the pip install step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
    python3 python3-venv python3-pip python3-dev git
    postgresql postgresql-client
    # kernel (netns) tier
    iproute2 nftables dnsmasq-base dnsmasq-utils busybox iputils-ping iputils-arping procps iptables
    # injection (debugfs, sfdisk, genisoimage/isoinfo) and the sandbox's qemu guests
    # (their kernel and busybox-static are fetched with `apt-get download`, not installed)
    e2fsprogs fdisk genisoimage qemu-system-x86 cpio kmod gzip findutils
    # cloudpipe VPN (server appliance and the netns proof's client)
    openvpn
)

# --- system packages --------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == "installed" ]] || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "system packages: all present"
    else
        log "system packages: installing ${missing[*]}"
        SUDO=()
        if ((EUID != 0)); then
            command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install: ${missing[*]}"
            SUDO=(sudo)
        fi
        export DEBIAN_FRONTEND=noninteractive
        # Refresh the index once per run, and only because something is missing.
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
        log "system packages: done"
    fi
else
    log "dpkg-query not found (not Debian?); skipping system packages"
fi

# --- python interpreter -----------------------------------------------------
py_ok() { # $1 = interpreter; true if it runs and is >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

VENV="$ROOT/.venv"
if [[ -x "$VENV/bin/python" ]] && py_ok "$VENV/bin/python"; then
    log "venv: reusing $VENV ($("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
else
    if command -v python3 >/dev/null 2>&1 && py_ok python3; then
        PY=python3
    elif py_ok /usr/bin/python3; then
        PY=/usr/bin/python3
    else
        die "no python3 >= 3.11 found"
    fi
    if [[ -e "$VENV" ]]; then
        log "venv: $VENV is missing a usable python >= 3.11; recreating"
        rm -rf -- "$VENV"
    fi
    log "venv: creating $VENV with $(command -v "$PY") ($("$PY" -c 'import platform; print(platform.python_version())'))"
    "$PY" -m venv "$VENV"
fi

# --- project install ----------------------------------------------------------
# Skip pip when pyproject.toml is unchanged since the last successful install
# and the package plus dev tools are still there.
STAMP="$VENV/.novanet-setup.stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version)' | head -n1)"
installed_ok() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] || return 1
    local tool
    for tool in pytest ruff mypy; do [[ -x "$VENV/bin/$tool" ]] || return 1; done
    "$VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("novanet")' >/dev/null 2>&1
}
if [[ "${NOVANET_SETUP_FORCE:-0}" != "1" ]] && installed_ok; then
    log "pip: novanet[dev] up to date"
else
    log "pip: installing -e '.[dev]'"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    printf '%s\n' "$want" >"$STAMP"
    log "pip: done"
fi

log "ok"
