#!/usr/bin/env bash
# Runs both bindings benchmarks (python_codec.py, node_codec.mjs) against a fresh keyring made
# with the tcodec CLI, over whatever builds of the packages are installed (.venv, node_modules).
#   benches/bindings/run.sh --quick    smoke run (scripts/test.sh): checks they work
#   benches/bindings/run.sh            the measured run; build both packages with --release
#                                      first (BENCHMARKS.md says how)
set -euo pipefail
cd "$(dirname "$0")/../.."
tcodec=${TCODEC_BIN:-target/debug/tcodec}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '%s' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$dir/master.key"
chmod 600 "$dir/master.key"
TCODEC_KEYRING="$dir/keyring.json" TCODEC_MASTER_KEY_FILE="$dir/master.key" \
  "$tcodec" keys init --name bench --kek local >/dev/null
echo "Python: tcodec.temporal.PayloadCodec vs the samples' format in pure Python (cryptography)"
.venv/bin/python benches/bindings/python_codec.py --keyring "$dir/keyring.json" --master-key-file "$dir/master.key" "$@"
echo
echo "Node: @tcodec/temporal PayloadCodec vs the samples' format with WebCrypto"
node benches/bindings/node_codec.mjs --keyring "$dir/keyring.json" --master-key-file "$dir/master.key" "$@"
