#!/usr/bin/env bash
# The tcodec demo: seals a customer record as a worker would, shows what the Temporal
# server stores, decodes it again and shows that tampering is caught.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo run --quiet --release --locked -p tcodec --example roundtrip
