#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the tests (the PostgreSQL key store is tested
# against a real server). One cluster serves a whole run; every test makes its own tables.
#
#   eval "$(.ci/postgres.sh start)"   # installs PostgreSQL if absent, starts a cluster, and prints
#                                      # export KMS_ENVELOPE_PG_URL=... and KMS_ENVELOPE_PG_DIR=...
#   .ci/postgres.sh stop               # stops the cluster in $KMS_ENVELOPE_PG_DIR and removes it
#
# `start --no-install` fails instead of installing (test/fixtures/postgres.ts uses that). Only the
# export lines go to standard output, everything else to standard error. The cluster trusts
# connections from 127.0.0.1 only (no password, no Unix socket), and runs without fsync: its
# data is thrown away.
set -euo pipefail

bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

# initdb and the server refuse to run as root: as root, run them as the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_postgres() {
  echo "postgres.sh: installing PostgreSQL" >&2
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2
}

free_port() {
  node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
}

start() {
  local install=1
  if [ "${1:-}" = --no-install ]; then install=0; fi
  local bin
  if ! bin="$(bindir)"; then
    if [ "$install" = 0 ]; then
      echo "postgres.sh: PostgreSQL is not installed (no initdb): install it (apt-get install postgresql) or set KMS_ENVELOPE_PG_URL" >&2
      exit 1
    fi
    install_postgres
    bin="$(bindir)"
  fi

  local dir
  dir="$(mktemp -d /tmp/kmse-pg.XXXXXX)"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U kmse -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }
  echo 'host all all 127.0.0.1/32 trust' | as_owner tee "$dir/data/pg_hba.conf" >/dev/null
  printf '%s\n' "listen_addresses = '127.0.0.1'" "unix_socket_directories = ''" \
    'fsync = off' 'synchronous_commit = off' 'full_page_writes = off' 'max_connections = 200' |
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null

  # A free port can be taken between the check and the server's bind: try a few.
  local port attempt
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
      "$bin/createdb" -h 127.0.0.1 -p "$port" -U kmse kmse >&2
      echo "export KMS_ENVELOPE_PG_URL=postgres://kmse@127.0.0.1:$port/kmse"
      echo "export KMS_ENVELOPE_PG_DIR=$dir"
      return 0
    fi
  done
  cat "$dir/server.log" >&2 || true
  rm -rf "$dir"
  echo "postgres.sh: the server did not start" >&2
  exit 1
}

stop() {
  local dir="${1:-${KMS_ENVELOPE_PG_DIR:-}}"
  # Only ever remove a folder this script made.
  case "$dir" in
    /tmp/kmse-pg.*) ;;
    *) echo "postgres.sh: stop expects the folder start printed (KMS_ENVELOPE_PG_DIR), got '$dir'" >&2; exit 2 ;;
  esac
  local bin
  if [ -f "$dir/data/postmaster.pid" ] && bin="$(bindir)"; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [--no-install] | stop [DIR]" >&2; exit 2 ;;
esac
