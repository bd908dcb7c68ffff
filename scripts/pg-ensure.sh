#!/usr/bin/env bash
# Make sure a local PostgreSQL server listens on 127.0.0.1:5432 and holds
# role `novanet` (password `novanet`, CREATEDB) and database `novanet` owned
# by it. Idempotent. Progress goes to stderr; the last line on stdout is the
# SQLAlchemy URL of the database.
# Needs root (or sudo) and the Debian postgresql packages (scripts/setup.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_ROLE=novanet
PG_PASSWORD=novanet
PG_DB=novanet
CLUSTER_NAME=main

log() { printf 'pg-ensure: %s\n' "$*" >&2; }
die() { printf 'pg-ensure: ERROR: %s\n' "$*" >&2; exit 1; }

command -v pg_lsclusters >/dev/null 2>&1 \
    || die "PostgreSQL (postgresql-common) is not installed; run scripts/setup.sh"

if ((EUID == 0)); then
    AS_ROOT=()
    AS_PG=(runuser -u postgres --)
else
    command -v sudo >/dev/null 2>&1 || die "need root or sudo"
    AS_ROOT=(sudo)
    AS_PG=(sudo -u postgres --)
fi

# psql as the postgres superuser over the local socket of our cluster.
# Run from / so psql does not complain about an unreadable cwd.
pg_psql() {
    (cd / && "${AS_PG[@]}" psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@")
}

# --- cluster ----------------------------------------------------------------
# pg_lsclusters -h: "ver cluster port status owner datadir logfile"
cluster_line="$(pg_lsclusters -h | awk -v port="$PG_PORT" '$3 == port { print; exit }')"
if [[ -z "$cluster_line" ]]; then
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null \
        | sort -n | tail -n1)"
    [[ -n "$ver" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql; run scripts/setup.sh"
    if pg_lsclusters -h | awk -v v="$ver" -v n="$CLUSTER_NAME" '$1 == v && $2 == n { f = 1 } END { exit !f }'; then
        die "cluster $ver/$CLUSTER_NAME exists but not on port $PG_PORT; fix it or free the port"
    fi
    log "creating cluster $ver/$CLUSTER_NAME on port $PG_PORT"
    "${AS_ROOT[@]}" pg_createcluster -p "$PG_PORT" "$ver" "$CLUSTER_NAME" >&2
    cluster_line="$(pg_lsclusters -h | awk -v port="$PG_PORT" '$3 == port { print; exit }')"
    [[ -n "$cluster_line" ]] || die "pg_createcluster did not produce a cluster on port $PG_PORT"
fi
read -r ver name _port status _rest <<<"$cluster_line"
if [[ "$status" == online* ]]; then
    log "cluster $ver/$name online on port $PG_PORT"
else
    log "starting cluster $ver/$name (was $status)"
    "${AS_ROOT[@]}" pg_ctlcluster "$ver" "$name" start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then break; fi
    sleep 0.5
done
pg_isready -q -h "$PG_HOST" -p "$PG_PORT" \
    || die "server not accepting TCP connections on $PG_HOST:$PG_PORT (see /var/log/postgresql/)"

# --- connections ------------------------------------------------------------------
# The end-to-end tests run several API processes (a pool each), agents (LISTEN plus
# queries), CLI calls and a lease script per DHCP event against this one server at once:
# Debian's default of 100 connections is too tight for that. Raised once (a restart).
MIN_CONNECTIONS=300
max_conn="$(pg_psql -d postgres -tA -c 'SHOW max_connections')"
if ((max_conn < MIN_CONNECTIONS)); then
    log "max_connections $max_conn -> $MIN_CONNECTIONS (restarting cluster $ver/$name)"
    pg_psql -d postgres -c "ALTER SYSTEM SET max_connections = $MIN_CONNECTIONS"
    "${AS_ROOT[@]}" pg_ctlcluster "$ver" "$name" restart >&2
    for _ in $(seq 1 60); do
        if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then break; fi
        sleep 0.5
    done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "server did not come back after the restart"
fi

# --- role and database --------------------------------------------------------
# Values travel as psql variables and are quoted by the server (:'x' literal,
# format %I/%L), never spliced into SQL by the shell. psql only interpolates
# variables in script input, so the SQL is fed on stdin.
log "ensuring role '$PG_ROLE' and database '$PG_DB'"
pg_psql -d postgres -v role="$PG_ROLE" -v password="$PG_PASSWORD" -v db="$PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \gexec
-- Tests drop their databases WITH (FORCE); autovacuum workers connected to them
-- belong to the superuser, and ending those needs pg_signal_backend.
SELECT format('GRANT pg_signal_backend TO %I', :'role') \gexec
SQL

# Prove the credentials work over TCP, as the tests will use them.
PGPASSWORD="$PG_PASSWORD" psql -X -q -w -tA -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" \
    -c 'SELECT 1' >/dev/null \
    || die "cannot log in as $PG_ROLE over TCP (check pg_hba.conf for $PG_HOST)"
log "ok"

printf 'postgresql+psycopg://%s:%s@%s:%s/%s\n' "$PG_ROLE" "$PG_PASSWORD" "$PG_HOST" "$PG_PORT" "$PG_DB"
