#!/usr/bin/env bash
# A throwaway redis-server on 127.0.0.1 for the tests (the Redis fleet coordinator is tested
# against a real server). One server serves a whole run; every test uses keys of its own prefix.
#
#   eval "$(.ci/redis.sh start)"   # installs redis-server if absent, starts one, and prints
#                                   # export KMS_ENVELOPE_REDIS_URL=... and KMS_ENVELOPE_REDIS_DIR=...
#   .ci/redis.sh stop               # stops the server in $KMS_ENVELOPE_REDIS_DIR and removes it
#
# `start --no-install` fails instead of installing (test/fixtures/redis.ts uses that). Only the
# export lines go to standard output. The server listens on 127.0.0.1 only, keeps nothing on disk
# (no RDB, no AOF) and runs as the calling user.
set -euo pipefail

install_redis() {
  echo "redis.sh: installing redis-server" >&2
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >&2
}

free_port() {
  node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
}

start() {
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "${1:-}" = --no-install ]; then
      echo "redis.sh: redis-server is not installed: install it (apt-get install redis-server) or set KMS_ENVELOPE_REDIS_URL" >&2
      exit 1
    fi
    install_redis
  fi
  local dir port attempt i
  dir="$(mktemp -d /tmp/kmse-redis.XXXXXX)"
  # A free port can be taken between the check and the server's bind: try a few.
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null 2>&1 || continue
    for i in $(seq 1 100); do
      if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
        echo "export KMS_ENVELOPE_REDIS_URL=redis://127.0.0.1:$port"
        echo "export KMS_ENVELOPE_REDIS_DIR=$dir"
        return 0
      fi
      sleep 0.05
    done
    [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  done
  cat "$dir/redis.log" >&2 || true
  rm -rf "$dir"
  echo "redis.sh: the server did not start" >&2
  exit 1
}

stop() {
  local dir="${1:-${KMS_ENVELOPE_REDIS_DIR:-}}"
  # Only ever stop and remove what this script made.
  case "$dir" in
    /tmp/kmse-redis.*) ;;
    *) echo "redis.sh: stop expects the folder start printed (KMS_ENVELOPE_REDIS_DIR), got '$dir'" >&2; exit 2 ;;
  esac
  if [ -f "$dir/redis.pid" ]; then
    local pid i
    pid="$(cat "$dir/redis.pid")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [--no-install] | stop [DIR]" >&2; exit 2 ;;
esac
