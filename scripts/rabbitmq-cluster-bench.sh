#!/usr/bin/env bash
# RabbitMQ's side of scripts/cluster-bench.sh: quorum-queue throughput on a
# three-node RabbitMQ cluster on this machine (issue 20; figures in
# tuning.md, "Clustering"). Scenarios c and d of scripts/compare.sh against
# a quorum queue `qq` (durable, x-queue-type=quorum, initial group size 3)
# declared on node 1, which makes node 1 its leader:
#   c: throughput --prefetch 1000 --ack-every 100 --confirm 1000
#   d: the same, --persistent --durable
# Setups, one after the other, on the same cluster:
#   leader  loadgen on node 1 (the queue's leader)
#   other   loadgen on node 2 (publishes and deliveries cross the cluster link)
# Env: DURATION (8), WARMUP (2), RUNS (3). Uses target/release/warren-loadgen
# as it is (build it first) and the Debian package rabbitmq-server (3.10.8)
# with a venv python with pika (scripts/pyenv.sh) to declare the queue.
# Prints one line per run and the medians; results and node logs under
# target/rabbitmq-cluster-bench/<timestamp>/.
#
# The three nodes (rabbit1..3@localhost) are private to this script: own
# AMQP and distribution ports on 127.0.0.1, own data/log dirs, no plugins
# (so no management/prometheus/stream listeners), a fresh shared Erlang
# cookie (HOME=<results dir>/home), /etc/rabbitmq/rabbitmq-env.conf ignored,
# and their own epmd on a free port (ERL_EPMD_PORT), so neither the system
# epmd on 4369 nor anyone else's nodes are touched. A running system
# rabbitmq-server service is stopped first (it would compete for the CPU)
# and started again at the end. Everything started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-3}
RMQ=/usr/lib/rabbitmq/bin
LG=target/release/warren-loadgen
[ -x "$LG" ] || { echo "$LG missing: cargo build --release -p warren-loadgen" >&2; exit 1; }
[ -x "$RMQ/rabbitmq-server" ] || { echo "no $RMQ/rabbitmq-server: apt-get install rabbitmq-server" >&2; exit 1; }
PY=$(scripts/pyenv.sh)
DIR=$PWD/target/rabbitmq-cluster-bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$DIR"

EPMD_PID=
PGIDS=()           # one process group per node
RESTART_SERVICE=0
cleanup() {
    for g in "${PGIDS[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
    [ -z "$EPMD_PID" ] || kill "$EPMD_PID" 2>/dev/null || true
    if [ "$RESTART_SERVICE" = 1 ]; then
        echo "starting the rabbitmq-server service again" >&2
        service rabbitmq-server start >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# ---- the system service (it runs as user rabbitmq; the nodes here run as us)
if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
    echo "stopping the rabbitmq-server service for the benchmark" >&2
    RESTART_SERVICE=1
    service rabbitmq-server stop >/dev/null
fi

# ---- environment shared by the nodes and rabbitmqctl
export HOME=$DIR/home            # .erlang.cookie for nodes and CLI alike
mkdir -p "$HOME"
python3 -c 'import secrets; print(secrets.token_hex(16).upper(), end="")' >"$HOME/.erlang.cookie"
chmod 400 "$HOME/.erlang.cookie"
export RABBITMQ_CONF_ENV_FILE=/nonexistent   # do not source /etc/rabbitmq/rabbitmq-env.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins
echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
export ERL_EPMD_PORT
ERL_EPMD_PORT=$(free_port)
# Our own epmd, in the foreground (not -daemon) so that $! is its pid; the
# nodes and rabbitmqctl find it through ERL_EPMD_PORT.
epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 >"$DIR/epmd.log" 2>&1 &
EPMD_PID=$!
wait_port "$ERL_EPMD_PORT"
ctl() { "$RMQ/rabbitmqctl" -q "$@"; }

# ---- three nodes
declare -A AMQP
for i in 1 2 3; do
    AMQP[$i]=$(free_port)
    dist=$(free_port)
    mkdir -p "$DIR/rabbit$i"
    cat >"$DIR/rabbit$i/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:${AMQP[$i]}
loopback_users = none
EOF
    # setsid: each node (script wrapper, beam.smp, erl_child_setup,
    # inet_gethost) in a process group of its own, killed as one.
    RABBITMQ_NODENAME="rabbit$i@localhost" \
    RABBITMQ_DIST_PORT=$dist \
    RABBITMQ_CONFIG_FILE="$DIR/rabbit$i/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$DIR/rabbit$i/mnesia" \
    RABBITMQ_LOG_BASE="$DIR/rabbit$i/log" \
    RABBITMQ_PID_FILE="$DIR/rabbit$i/pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        setsid "$RMQ/rabbitmq-server" >"$DIR/rabbit$i/stdout.log" 2>&1 &
    PGIDS+=($!)
done
for i in 1 2 3; do
    ctl -n "rabbit$i@localhost" wait --timeout 120 "$DIR/rabbit$i/pid" >/dev/null \
        || { echo "rabbit$i did not start: see $DIR/rabbit$i" >&2; exit 1; }
done
for i in 2 3; do
    ctl -n "rabbit$i@localhost" stop_app
    ctl -n "rabbit$i@localhost" join_cluster rabbit1@localhost
    ctl -n "rabbit$i@localhost" start_app
done
running=0
for _ in $(seq 60); do
    running=$(ctl -n rabbit1@localhost cluster_status --formatter json \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
    [ "$running" = 3 ] && break
    sleep 1
done
[ "$running" = 3 ] || { echo "cluster has $running running nodes, not 3" >&2; exit 1; }
echo "cluster: rabbit1..3@localhost, AMQP ports ${AMQP[1]} ${AMQP[2]} ${AMQP[3]}" | tee "$DIR/results.txt"

# ---- the quorum queue, declared through node 1
"$PY" - "amqp://guest:guest@127.0.0.1:${AMQP[1]}/%2f" <<'EOF'
import sys, pika
c = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
c.channel().queue_declare("qq", durable=True, arguments={
    "x-queue-type": "quorum", "x-quorum-initial-group-size": 3})
c.close()
EOF
show_qq() { ctl -n rabbit1@localhost list_queues name type leader members --formatter json \
    | python3 -c 'import json,sys
for q in json.load(sys.stdin):
    if q["name"] == "qq": print("qq:", q["type"], "leader", q["leader"], "members", " ".join(q["members"]))' \
    | tee -a "$DIR/results.txt"; }
show_qq

run() { # label scenario uri
    local extra=()
    [ "$2" = d ] && extra=(--persistent --durable)
    for r in $(seq "$RUNS"); do
        local out
        out=$("$LG" throughput --uri "$3" --queue qq --prefetch 1000 --ack-every 100 --confirm 1000 \
            "${extra[@]}" --duration "$DURATION" --warmup "$WARMUP" --json 2>>"$DIR/loadgen.err" || true)
        printf '%s\n' "$out" >>"$DIR/loadgen.json"
        local rate
        rate=$(printf '%s' "$out" | python3 -c 'import json,sys
try: d=json.load(sys.stdin); print(int(d["deliver_rate"]), int(d["confirm_rate"]))
except Exception: print(0, 0)')
        echo "$1 $2 run $r: delivered/s confirmed/s $rate" | tee -a "$DIR/results.txt"
    done
}

for s in c d; do run leader "$s" "amqp://guest:guest@127.0.0.1:${AMQP[1]}/%2f"; done
show_qq   # still on node 1? (an election under load would move it)
for s in c d; do run other "$s" "amqp://guest:guest@127.0.0.1:${AMQP[2]}/%2f"; done
show_qq

# ---- medians per setup and scenario
(python3 - "$DIR/results.txt" <<'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]).readlines():
    m = re.match(r"(\S+) (\S+) run \d+: delivered/s confirmed/s (\d+) (\d+)", line)
    if m:
        runs.setdefault((m[1], m[2]), []).append((int(m[3]), int(m[4])))
for (label, s), v in runs.items():
    print(f"median {label} {s}: delivered/s confirmed/s "
          f"{int(statistics.median(d for d, _ in v))} {int(statistics.median(c for _, c in v))}")
EOF
) | tee -a "$DIR/results.txt"
echo "results in $DIR/results.txt"
