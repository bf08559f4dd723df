#!/usr/bin/env bash
# Management API and Prometheus response times at scale (issue 13):
# QUEUES queues (default 100,000, loaded from a definitions file at boot),
# then CONNS idle client connections (default 10,000, warren-loadgen
# connections) held open while the endpoints are timed again. Prints, per
# endpoint, the median of 5 requests (curl's time_total) and the answer's
# size, plus the broker's RSS before and after the queues (memory per queue).
#
# Against warren (default) it starts a release build on ports 25692 (AMQP)
# / 25693 (HTTP) / 25694 (Prometheus). Against RabbitMQ, start it yourself
# and point the script at it:
#   TARGET=rabbitmq AMQP_PORT=5672 HTTP_PORT=15672 PROM_PORT=15692 \
#   RABBIT_PID=$(pgrep -f beam.smp) scripts/bench-mgmt-scale.sh
# (queues are then imported with POST /api/definitions).
# Usage: QUEUES=100000 CONNS=10000 scripts/bench-mgmt-scale.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
QUEUES=${QUEUES:-100000}
CONNS=${CONNS:-10000}
TARGET=${TARGET:-warren}
AMQP_PORT=${AMQP_PORT:-25692}
HTTP_PORT=${HTTP_PORT:-25693}
PROM_PORT=${PROM_PORT:-25694}
[ "${1:-}" = "--no-build" ] || cargo build --release -q -p warren -p warren-loadgen
L=target/release/warren-loadgen
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Definitions files of at most 20,000 queues each (RabbitMQ refuses request
# bodies over its management.http.max_body_size).
python3 - "$T" "$QUEUES" <<'PY'
import json, sys
n = int(sys.argv[2])
for c, start in enumerate(range(0, n, 20000)):
    qs = [{"name": f"scale-q{i:06d}", "vhost": "/", "durable": True, "auto_delete": False,
           "arguments": {}} for i in range(start, min(n, start + 20000))]
    json.dump({"queues": qs}, open(f"{sys.argv[1]}/defs-{c:03d}.json", "w"))
PY

rss() { awk '/VmRSS/ {printf "%d\n", $2 * 1024}' "/proc/$1/status"; }

if [ "$TARGET" = warren ]; then
  "target/release/warren" --port "$AMQP_PORT" --http-port "$HTTP_PORT" --prometheus-port "$PROM_PORT" \
    --bind 127.0.0.1 --data-dir "$T/data" --log-level warn &
  PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -u guest:guest "http://127.0.0.1:$HTTP_PORT/api/overview" && break; sleep 0.1
  done
else
  PID=${RABBIT_PID:?set RABBIT_PID to the broker process id}
fi
RSS0=$(rss "$PID")
T0=$(date +%s.%N)
for f in "$T"/defs-*.json; do
  curl -s -f -m 600 -u guest:guest -H 'content-type: application/json' -X POST \
    --data-binary @"$f" "http://127.0.0.1:$HTTP_PORT/api/definitions" >/dev/null
done
# Wait until every queue is there.
for _ in $(seq 600); do
  n=$(curl -s -u guest:guest "http://127.0.0.1:$HTTP_PORT/api/overview" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["object_totals"]["queues"])')
  [ "$n" -ge "$QUEUES" ] && break; sleep 1
done
T1=$(date +%s.%N)
RSS1=$(rss "$PID")
echo "$TARGET: $QUEUES queues imported in $(python3 -c "print(round($T1-$T0,1))") s;" \
  "RSS $((RSS0 / 1048576)) MiB -> $((RSS1 / 1048576)) MiB," \
  "$(( (RSS1 - RSS0) / QUEUES )) bytes per queue"

time_get() { # label url [auth]
  local label=$1 url=$2 auth=${3:-yes} times=() size=0
  for _ in 1 2 3 4 5; do
    local out
    if [ "$auth" = yes ]; then
      out=$(curl -s -o "$T/body" -w '%{time_total} %{size_download} %{http_code}' -u guest:guest "$url")
    else
      out=$(curl -s -o "$T/body" -w '%{time_total} %{size_download} %{http_code}' "$url")
    fi
    read -r t s code <<<"$out"
    times+=("$t"); size=$s
    [ "$code" = 200 ] || echo "  ($label: HTTP $code)"
  done
  python3 -c "import statistics,sys; ts=sorted(map(float, sys.argv[3:])); print(f'  {sys.argv[1]:45} {statistics.median(ts)*1000:9.1f} ms  {int(sys.argv[2])/1e6:8.2f} MB')" \
    "$label" "$size" "${times[@]}"
}

endpoints() {
  local h="http://127.0.0.1:$HTTP_PORT" p="http://127.0.0.1:$PROM_PORT"
  time_get "GET /api/overview" "$h/api/overview"
  time_get "GET /api/queues?page=1&page_size=100" "$h/api/queues?page=1&page_size=100"
  time_get "GET /api/queues?page=900&page_size=100&sort=name" "$h/api/queues?page=900&page_size=100&sort=name&sort_reverse=true"
  time_get "GET /api/queues?page=1&page_size=500&name=q09" "$h/api/queues?page=1&page_size=500&name=q09&use_regex=false"
  time_get "GET /api/queues (all)" "$h/api/queues"
  time_get "GET /api/queues?disable_stats=true (all)" "$h/api/queues?disable_stats=true&enable_queue_totals=true"
  time_get "GET /api/connections?page=1&page_size=100" "$h/api/connections?page=1&page_size=100"
  time_get "GET /api/connections (all)" "$h/api/connections"
  time_get "GET /api/channels (all)" "$h/api/channels"
  time_get "GET /metrics" "$p/metrics" no
  time_get "GET /metrics/per-object" "$p/metrics/per-object" no
}

echo "with $QUEUES queues:"
endpoints
"$L" connections --uri "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f" --connections "$CONNS" \
  --threads 8 --hold 600 >"$T/conns.log" 2>&1 &
LG=$!
for _ in $(seq 300); do
  n=$(curl -s -u guest:guest "http://127.0.0.1:$HTTP_PORT/api/overview" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["object_totals"]["connections"])')
  [ "$n" -ge "$CONNS" ] && break; sleep 1
done
RSS2=$(rss "$PID")
echo "with $QUEUES queues and $n connections (RSS $((RSS2 / 1048576)) MiB):"
endpoints
kill $LG 2>/dev/null || true
