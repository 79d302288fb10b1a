#!/usr/bin/env bash
# make demo: start sentineld on the embedded default (etc/sentinel.conf, with its data path and
# port moved into a temp dir so no root is needed), replay the bundled scenarios into its
# ingest API, and follow the incidents through detect -> correlate -> analyze -> plan ->
# approve -> execute -> verify -> resolve. The second scenario needs a human: the demo approves
# it with sentinelctl, as an operator would.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/$build"
work=$(mktemp -d /tmp/sentinel-demo.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export SENTINEL_URL="http://127.0.0.1:$port"
ctl="$bin/tools/sentinelctl/sentinelctl"

sed -e "s|/var/lib/sentinel/sentinel.db|$work/sentinel.db|" \
    -e "s|^listen *=.*|listen = 127.0.0.1:$port|" "$root/etc/sentinel.conf" > "$work/sentinel.conf"

cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  echo "demo: daemon log and state kept in $work"
}
trap cleanup EXIT

"$bin/core/sentineld" -t -c "$work/sentinel.conf"
"$bin/core/sentineld" -c "$work/sentinel.conf" 2> "$work/sentineld.log" &
pid=$!
for _ in $(seq 100); do
  curl -fsS "$SENTINEL_URL/health" >/dev/null 2>&1 && break
  sleep 0.1
done

post() {
  # The ingest API takes JSON lines; send the recording in chunks as an agent would.
  split -l 2000 "$1" "$work/chunk."
  for f in "$work"/chunk.*; do
    curl -fsS -X POST --data-binary @"$f" -H 'Content-Type: application/x-ndjson' \
      "$SENTINEL_URL/v1/events" > /dev/null
    rm -f "$f"
  done
}

echo "== scenario 1: a deploy of checkout raises latency and errors on three services"
start=$(date +%s%N)
post "$root/etc/scenarios/checkout-deploy.jsonl"
"$ctl" wait --any --follow --timeout 60
id=$("$ctl" --json incidents | python3 -c 'import json,sys; print(json.load(sys.stdin)["incidents"][-1]["id"])')
end=$(date +%s%N)
"$ctl" show "$id" | sed -n '1,/^timeline:/p'
state=$("$ctl" --json show "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
echo "scenario 1: incident $id $state in $(( (end - start) / 1000000 )) ms from first byte"
[ "$state" = resolved ]

echo
echo "== scenario 2: payments' memory grows with no deploy: the plan needs a human"
post "$root/etc/scenarios/payments-memory.jsonl"
id2=""
for _ in $(seq 100); do
  id2=$("$ctl" --json incidents --state awaiting_approval | python3 -c 'import json,sys; i=json.load(sys.stdin)["incidents"]; print(i[0]["id"] if i else "")')
  [ -n "$id2" ] && break
  sleep 0.1
done
[ -n "$id2" ] || { echo "demo: no incident is waiting for approval" >&2; exit 1; }
"$ctl" show "$id2" | sed -n '/^plan:/,/^executions:/p'
echo "demo: an operator approves: sentinelctl approve $id2"
"$ctl" approve "$id2" --reason "scale-up reviewed in the demo"
"$ctl" wait "$id2" --follow --timeout 30
state2=$("$ctl" --json show "$id2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
echo "scenario 2: incident $id2 $state2"
[ "$state2" = resolved ]

echo
echo "== audit chain"
"$ctl" audit | tail -n 8
kill -TERM "$pid"; wait "$pid" || true; pid=""
"$ctl" audit verify -c "$work/sentinel.conf"
echo "demo: ok"
