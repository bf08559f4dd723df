#!/usr/bin/env bash
# Measures what statistics cost on the publish path (issue 13): scenario a
# (no-ack) and c (acks + confirms) with
#   quiet:  nobody reads the statistics;
#   polled: a client hammers the management API and the Prometheus endpoint
#           at 10 requests/s during the run (overview, queues, connections,
#           channels, consumers, /metrics/per-object, round robin);
#   idle:   (only if IDLE is set) the same two HTTP connections as polled,
#           one request each, then silence: separates the cost of serving
#           requests from that of the poller's presence (its connections
#           shift the loadgen's ephemeral ports, and with them which shard
#           SO_REUSEPORT gives each loadgen connection);
#   base:   (only if BASE_BIN is set) another warren binary, e.g. a build
#           of the commit before the counters, nobody polling.
# Runs alternate ROUNDS times; prints one line per run and the medians.
# Release build; AMQP port 25682, HTTP 25683, Prometheus 25684.
# Usage: ROUNDS=3 DURATION=5 [SCENARIOS="a c"] [BASE_BIN=/path/to/old/warren] scripts/bench-stats.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
[ "${1:-}" = "--no-build" ] || cargo build --release -q -p warren -p warren-loadgen
W=target/release/warren
L=target/release/warren-loadgen
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT

start() { # binary extra-args...
  local bin=$1; shift
  rm -rf "$T/data"
  "$bin" --port 25682 --bind 127.0.0.1 --data-dir "$T/data" --log-level warn "$@" &
  echo $! > "$T/pid"
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/25682) 2>/dev/null && return 0; sleep 0.1
  done
  echo "broker did not start" >&2; exit 1
}
stop() { kill "$(cat "$T/pid")"; wait "$(cat "$T/pid")" 2>/dev/null || true; }

# 10 requests/s until killed, each a full answer read, over two kept-alive
# HTTP connections (one Python process: the poller's own CPU stays small,
# which matters on a 2-core machine shared with the broker and the loadgen).
poll() { # [idle: one request per connection, then none]
  exec python3 - "${1:-busy}" <<'PY'
import base64, http.client, sys, time
auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
api = http.client.HTTPConnection("127.0.0.1", 25683)
prom = http.client.HTTPConnection("127.0.0.1", 25684)
paths = ["/api/overview", "/api/queues", "/api/connections", "/api/channels", "/api/consumers"]
i = 0
if sys.argv[1] == "idle":
    api.request("GET", "/api/overview", headers=auth); api.getresponse().read()
    prom.request("GET", "/metrics"); prom.getresponse().read()
    while True:
        time.sleep(1)
while True:
    t = time.monotonic()
    try:
        if i % 6 == 5:
            prom.request("GET", "/metrics/per-object"); prom.getresponse().read()
        else:
            api.request("GET", paths[i % len(paths)], headers=auth); api.getresponse().read()
    except Exception:
        api = http.client.HTTPConnection("127.0.0.1", 25683)
        prom = http.client.HTTPConnection("127.0.0.1", 25684)
    i += 1
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
PY
}

run() { # label scenario
  local label=$1 sc=$2
  local opts="--no-ack"
  [ "$sc" = c ] && opts="--prefetch 1000 --ack-every 100 --confirm 1000"
  # shellcheck disable=SC2086
  local out; out=$("$L" throughput --size 16 $opts --duration "$DURATION" --warmup 1 \
    --uri amqp://guest:guest@127.0.0.1:25682/%2f --json 2>/dev/null)
  local rate; rate=$(python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(int(d.get("deliver_rate") or d.get("consume_rate") or d.get("recv_rate") or 0))' <<<"$out")
  echo "$label $sc $rate"
  echo "$label $sc $rate" >> "$T/results"
}

for _ in $(seq "$ROUNDS"); do
  for sc in ${SCENARIOS:-a c}; do
    start "$W" --http-port 25683 --prometheus-port 25684
    run quiet $sc; stop
    start "$W" --http-port 25683 --prometheus-port 25684
    poll & POLLER=$!
    run polled $sc
    kill $POLLER; wait $POLLER 2>/dev/null || true
    stop
    if [ -n "${IDLE:-}" ]; then
      start "$W" --http-port 25683 --prometheus-port 25684
      poll idle & POLLER=$!
      run idle $sc
      kill $POLLER; wait $POLLER 2>/dev/null || true
      stop
    fi
    if [ -n "${BASE_BIN:-}" ]; then
      start "$BASE_BIN" --http-port 0; run base $sc; stop
    fi
  done
done
echo "median deliveries/s:"
python3 - "$T/results" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    l, s, r = line.split(); d[(l, s)].append(int(r))
for (l, s), v in sorted(d.items()):
    print(f"  {l:8} {s}: {int(statistics.median(v)):>10,}  (runs: {v})")
PY
