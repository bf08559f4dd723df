#!/usr/bin/env bash
# Quorum-queue throughput, one node versus a three-node cluster (issue 20;
# figures in tuning.md, "Clustering"). Scenarios c and d of
# scripts/compare.sh against a quorum queue `qq` declared beforehand:
#   c: throughput --prefetch 1000 --ack-every 100 --confirm 1000
#   d: the same, --persistent --durable
# Setups, one after the other on this machine:
#   single  one warren (no --etcd), --shards 2: qq is a durable queue
#   leader  three nodes (--shards 1 each) and etcd; loadgen on the leader
#   other   the same cluster; loadgen on another node (publishes and
#           deliveries cross the cluster link)
# Env: DURATION (8), WARMUP (2), RUNS (3), NO_BUILD=1 to skip the build.
# Prints one line per run and the medians. Needs etcd (scripts/install-etcd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-3}
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q --workspace
W=target/release/warren
LG=target/release/warren-loadgen
[ -x "$W" ] && [ -x "$LG" ] || { echo "cluster-bench: build warren and warren-loadgen first (cargo build --release --workspace)" >&2; exit 1; }
DIR=target/cluster-bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
declare_qq() { # http port
    curl -sf -u guest:guest -X PUT -H 'content-type: application/json' \
        "http://127.0.0.1:$1/api/queues/%2F/qq" \
        -d '{"durable":true,"arguments":{"x-queue-type":"quorum"}}' >/dev/null
}
run() { # label scenario uri
    local extra=()
    [ "$2" = d ] && extra=(--persistent --durable)
    for r in $(seq "$RUNS"); do
        local out
        out=$("$LG" throughput --uri "$3" --queue qq --prefetch 1000 --ack-every 100 --confirm 1000 \
            "${extra[@]}" --duration "$DURATION" --warmup "$WARMUP" --json 2>>"$DIR/loadgen.err" || true)
        local rate
        rate=$(printf '%s' "$out" | python3 -c 'import json,sys
try: d=json.load(sys.stdin); print(int(d["deliver_rate"]), int(d["confirm_rate"]))
except Exception: print(0, 0)')
        echo "$1 $2 run $r: delivered/s confirmed/s $rate" | tee -a "$DIR/results.txt"
    done
}

# ---- single node
P=$(free_port); H=$(free_port)
WARREN_CONFIG=/dev/null "$W" --port "$P" --bind 127.0.0.1 --http-port "$H" --prometheus-port 0 \
    --data-dir "$DIR/single" --shards 2 --log-level warn >"$DIR/single.log" 2>&1 &
PIDS+=($!)
wait_port "$H"; declare_qq "$H"
for s in c d; do run single "$s" "amqp://guest:guest@127.0.0.1:$P/%2f"; done
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# ---- three nodes
EP=$(free_port); PP=$(free_port)
etcd --name b --data-dir "$DIR/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
    --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$PP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "b=http://127.0.0.1:$PP" \
    >"$DIR/etcd.log" 2>&1 &
PIDS+=($!)
wait_port "$EP"
declare -A AMQP HTTP
for n in a b c; do
    AMQP[$n]=$(free_port); HTTP[$n]=$(free_port)
    WARREN_CONFIG=/dev/null "$W" --port "${AMQP[$n]}" --bind 127.0.0.1 --http-port "${HTTP[$n]}" \
        --prometheus-port 0 --data-dir "$DIR/$n" --shards 1 --log-level warn --node-name "warren@$n" \
        --etcd "http://127.0.0.1:$EP" --cluster-name bench --cluster-port 0 \
        --advertise-address 127.0.0.1 >"$DIR/$n.log" 2>&1 &
    PIDS+=($!)
done
for n in a b c; do wait_port "${HTTP[$n]}"; done
sleep 1
declare_qq "${HTTP[a]}"
sleep 1
for s in c d; do run leader "$s" "amqp://guest:guest@127.0.0.1:${AMQP[a]}/%2f"; done
for s in c d; do run other "$s" "amqp://guest:guest@127.0.0.1:${AMQP[b]}/%2f"; done
echo "results in $DIR/results.txt"
