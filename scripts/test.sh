#!/usr/bin/env bash
# Runs everything that checks tcodec: formatting, lints, the whole test suite (with
# the end-to-end tests against a real Temporal dev server), the independent vector
# generator, a one-pass smoke run of every benchmark, a bounded fuzzing run, the Web UI
# browser test and the demo.
# Installs what it needs first (scripts/setup.sh). Fails loudly; skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step is stamped with the seconds since the start: README's timings come from these.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*" >&2; }

# One clean build, checked once: incremental caches would only cost disk (2.4 GiB of them
# under the old full-debug-info profiles).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# A clean run grows disk use by ~7.4 GiB (README.md, "Disk and time"); say so up front
# rather than let a build die of ENOSPC ten minutes in.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
printf '[test] %s GiB free on the disk holding %s\n' "$((free_kib / 1048576))" "$PWD" >&2
if ((free_kib < 8 * 1048576)); then
  printf '[test] WARNING: a clean run needs about 8 GiB free; expect "No space left on device"\n' >&2
fi

step "setup"
./scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p tcodec-benches --features worker-overhead --all-targets --locked -- -D warnings

step "test vectors match their independent Python generator, whose decoder passes the conformance runner"
.venv/bin/python codec/tests/vectors/generate.py --check
.venv/bin/python codec/tests/vectors/conformance.py -- .venv/bin/python codec/tests/vectors/generate.py --decode

step "cargo test (workspace, incl. doctests)"
# The bindings' crates have no Rust tests: maturin and @napi-rs/cli build them below.
bindings="--exclude tcodec-python --exclude tcodec-node"
cargo test --workspace --locked --no-fail-fast $bindings
# Every binary, for the tests below (the three-language workflow runs the reference worker,
# the browser test the demo's binaries). The worker-overhead benchmark sits behind a feature
# (it needs the Temporal SDK); built with the test profile, whose SDK build is already made.
cargo build --workspace --all-targets --profile test --locked $bindings
cargo build -p tcodec-benches --features worker-overhead --bin worker-overhead --profile test --locked

step "the Python package (bindings/python): built by maturin into .venv"
# In the workspace's target dir, with the test profile's settings under the name "bindings"
# (Cargo.toml), which the Node package's build below shares.
rm -rf target/wheels
.venv/bin/maturin build --quiet -m bindings/python/Cargo.toml --profile bindings -i .venv/bin/python -o target/wheels
.venv/bin/python -m pip install -q --force-reinstall --no-deps target/wheels/tcodec-*.whl

step "the Node package @tcodec/temporal (bindings/node): built by @napi-rs/cli, tested with node --test"
# npm ci (scripts/setup.sh) linked it into node_modules as a workspace; this builds its module.
node_modules/.bin/napi build --platform --profile bindings --manifest-path bindings/node/Cargo.toml \
  --package-json-path bindings/node/package.json -o bindings/node --js native.js --dts native.d.ts
node --test bindings/node/tests/

step "the Python package's tests (pytest), the three-language workflow included"
.venv/bin/python -m pytest -q -p no:cacheprovider bindings/python/tests

step "tcodec's decoder passes the format's conformance runner (codec/tests/vectors/README.md)"
# cargo test built the example with the test profile.
.venv/bin/python codec/tests/vectors/conformance.py -- target/debug/examples/conformance_decoder

step "benchmarks compile and run once (timings are measured by benches, not here)"
cargo bench -p tcodec-benches --locked -- --test
# cargo bench built the load generator with the bench profile; phases of 0.2 s, and it fails
# on any answer but a 200.
target/release/tcodec-load target/debug/tcodec 0.2
benches/bindings/run.sh --quick
.venv/bin/python benches/storage/download.py --quick

step "the Temporal Web UI decrypts through tcodec, External Storage included, in Chromium (node --test tests/browser/)"
node --test tests/browser/

step "fuzz targets run 60 s each without a crash (./scripts/fuzz.sh)"
./scripts/fuzz.sh 60

step "the demo runs end to end (./scripts/demo.sh --no-wait)"
./scripts/demo.sh --no-wait

step "all checks passed"
