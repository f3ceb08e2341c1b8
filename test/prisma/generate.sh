#!/usr/bin/env bash
# Installs the Prisma fixture projects (their own package-lock.json) and generates their clients
# into v6/generated and v7/generated. PRISMA_SCHEMA_ENGINE_BINARY (and, for Prisma 6,
# PRISMA_QUERY_ENGINE_LIBRARY) name a stub: `prisma generate` would otherwise download engines it
# does not run for generating a client, and nothing can be downloaded here.
# Usage: bash test/prisma/generate.sh [--install]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stub="$here/stub-engine.sh"
for v in v6 v7; do
  if [ "${1:-}" = --install ] || [ ! -d "$here/$v/node_modules/prisma" ]; then
    npm ci --prefix "$here/$v" --no-audit --no-fund
  fi
  ( cd "$here/$v" && PRISMA_SCHEMA_ENGINE_BINARY="$stub" PRISMA_QUERY_ENGINE_LIBRARY="$stub" PRISMA_HIDE_UPDATE_MESSAGE=1 \
      node node_modules/prisma/build/index.js generate --schema schema.prisma )
done
