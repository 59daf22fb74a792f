#!/usr/bin/env bash
# Runs the test suite (or the test files given) on another major version of Node.js, e.g.
#   npm run test:node -- 22                 # the whole suite on Node 22
#   npm run test:node -- 24 dist/test/unit/*.test.js
# Node itself comes from the npm registry (the `node` package carries the official binaries and
# headers), so nothing is downloaded from elsewhere. The project is copied to .node/<major>/ and
# installed there with that Node, so native dependencies (better-sqlite3) are built for its ABI
# without touching this checkout's node_modules.
set -euo pipefail
major="${1:?usage: test-on-node.sh <major> [test files…]}"
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.node/$major"
mkdir -p "$work"

# The Node binary and headers: the registry's node-<platform>-<arch> package (the official build).
case "$(uname -m)" in x86_64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
pkg="node-linux-$arch"
nodehome="$work/runtime/node_modules/$pkg"
if [ ! -x "$nodehome/bin/node" ] || [ "$("$nodehome/bin/node" -p 'process.versions.node.split(".")[0]')" != "$major" ]; then
  rm -rf "$work/runtime"
  npm install --no-save --no-package-lock --no-fund --no-audit --prefix "$work/runtime" "$pkg@$major"
fi
[ -x "$nodehome/bin/node" ] && [ -f "$nodehome/include/node/node.h" ] || {
  echo "$pkg@$major from the registry has no binary and headers at $nodehome" >&2
  exit 1
}
echo "== Node $("$nodehome/bin/node" --version) at $nodehome"

# A copy of the sources (not node_modules, dist or local state), installed with that Node.
mkdir -p "$work/project"
tar -C "$root" --exclude=./node_modules --exclude=./dist --exclude=./.node --exclude=./.git \
  --exclude=./.sluice --exclude=./.pgdata -cf - . | tar -C "$work/project" -xf -
cd "$work/project"
export PATH="$nodehome/bin:$PATH"
export npm_config_nodedir="$nodehome"
if [ ! -f node_modules/.installed ] || ! cmp -s package-lock.json node_modules/.installed; then
  npm ci --no-fund --no-audit
  cp package-lock.json node_modules/.installed
else
  npm run build
fi
node -e 'new (require("better-sqlite3"))(":memory:").close()' # the native module loads on this ABI
if [ "$#" -eq 0 ]; then
  npm test
else
  node --test --test-concurrency=1 "$@"
fi
