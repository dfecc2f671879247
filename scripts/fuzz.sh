#!/usr/bin/env bash
# Runs the cargo fuzz targets in fuzz/ for SECONDS each (default 60): any crash fails.
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(payload_decode request_body keyring_document)
fi
# cargo fuzz uses nightly-only flags; allow them on the stable toolchain for these builds.
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build --sanitizer none
for target in "${targets[@]}"; do
  scratch=$(mktemp -d)
  echo "[fuzz] $target for ${seconds}s" >&2
  cargo fuzz run --sanitizer none "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
  rm -rf "$scratch"
done
