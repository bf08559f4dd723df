#!/usr/bin/env bash
# Side-by-side warren vs RabbitMQ with warren-loadgen.
#
# Usage: scripts/compare.sh [options] [SCENARIO...]
#
# Builds warren and warren-loadgen (release), starts its own warren on a free
# port with a temporary data dir, and runs each scenario against warren and
# against the RabbitMQ at RABBIT_URI, alternating (warren, rabbit, warren,
# rabbit, ...) RUNS times each. Every run's --json line is kept under the
# results dir; at the end a table of medians is printed with the machine and
# the exact loadgen commands. If RabbitMQ is not reachable, warren runs alone.
#
# Scenarios (1 producer, 16 B bodies):
#   a  1 queue, 1 consumer, no-ack, unlimited rate         -> deliveries/s
#   c  as a, manual acks (prefetch 1000, ack every 100,
#      multiple) + confirms (1000 outstanding)             -> deliveries/s
#   d  as c, persistent messages, durable queue            -> deliveries/s
#   f  fanout to 4 queues, 4 consumers, no-ack             -> deliveries/s (all queues)
#   g  latency at a fixed 10,000 msg/s, no-ack             -> p99, p50 (us)
#   h  broker RSS per idle connection, 1,000 connections   -> KiB per connection
# Default: all of them.
#
# Options (each with an environment fallback):
#   --runs N          RUNS           runs per broker and scenario (default 3)
#   --duration S      DURATION       measured seconds per run (default 10)
#   --warmup S        WARMUP         unmeasured seconds first (default 2)
#   --port P          WARREN_PORT    port of the warren started here (default 5673)
#   --shards N        WARREN_SHARDS  warren --shards (default: nproc)
#   --rabbit-uri U    RABBIT_URI     default amqp://guest:guest@127.0.0.1:5672/%2f
#   --results DIR     RESULTS_DIR    default target/compare/<timestamp>
#   --warren-only     WARREN_ONLY=1  do not use RabbitMQ
#   --no-build        NO_BUILD=1     use the binaries in target/release as they are
#   WARREN_ARGS      extra warren flags, e.g. "--shards 1" or "--no-pin"
#                    (warren pins its shard threads to cores by default)
#   LOADGEN_TASKSET  prefix for every loadgen command, e.g. "taskset -c 1"
#   RABBIT_RESTART_CMD  run before each RabbitMQ run of scenario h, e.g.
#                    "service rabbitmq-server restart" (warren is always
#                    restarted before each h run: a fresh allocator)
#
# Scenario h needs the broker's pid: warren's is known; for RabbitMQ it is the
# beam.smp process, found with `rabbitmqctl status` (OS PID) or pgrep, and only
# when RABBIT_URI points at this machine (else its cells say "failed").

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PORT=${WARREN_PORT:-5673}
SHARDS=${WARREN_SHARDS:-$(nproc)}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5672/%2f}
RESULTS_DIR=${RESULTS_DIR:-}
WARREN_ONLY=${WARREN_ONLY:-0}
NO_BUILD=${NO_BUILD:-0}
WARREN_ARGS=${WARREN_ARGS:-}
LOADGEN_TASKSET=${LOADGEN_TASKSET:-}
ALL_SCENARIOS="a c d f g h"

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

SCENARIOS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --port) PORT=${2:?}; shift 2 ;;
        --shards) SHARDS=${2:?}; shift 2 ;;
        --rabbit-uri) RABBIT_URI=${2:?}; shift 2 ;;
        --results) RESULTS_DIR=${2:?}; shift 2 ;;
        --warren-only) WARREN_ONLY=1; shift ;;
        --no-build) NO_BUILD=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            for s in $1; do
                case " $ALL_SCENARIOS " in
                    *" $s "*) SCENARIOS+=("$s") ;;
                    *) die "unknown scenario '$s' (one of: $ALL_SCENARIOS)" ;;
                esac
            done
            shift
            ;;
    esac
done
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    read -r -a SCENARIOS <<<"$ALL_SCENARIOS"
fi
case "$RUNS" in '' | *[!0-9]* | 0) die "--runs must be a positive integer" ;; esac
case "$PORT" in '' | *[!0-9]*) die "--port must be a number" ;; esac

command -v python3 >/dev/null || die "python3 is needed to read the JSON results"

read -r -a WARREN_EXTRA <<<"$WARREN_ARGS"
read -r -a TASKSET <<<"$LOADGEN_TASKSET"
# --shards from WARREN_ARGS wins (clap refuses a repeated flag).
SHARD_FLAG=(--shards "$SHARDS")
for a in "${WARREN_EXTRA[@]}"; do
    case "$a" in --shards | --shards=*) SHARD_FLAG=() ;; esac
done

if [ -z "$RESULTS_DIR" ]; then
    RESULTS_DIR=target/compare/$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)

WARREN_BIN=$ROOT/target/release/warren
LOADGEN_BIN=$ROOT/target/release/warren-loadgen
WARREN_URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"

if [ "$NO_BUILD" != 1 ]; then
    echo "== cargo build --release -p warren -p warren-loadgen" >&2
    cargo build --release -p warren -p warren-loadgen >&2
fi
for bin in "$WARREN_BIN" "$LOADGEN_BIN"; do
    [ -x "$bin" ] || die "missing $bin (build it, or drop --no-build)"
done

# --- warren ----------------------------------------------------------------

WARREN_PID=
DATA_DIR=
stop_warren() {
    if [ -n "$WARREN_PID" ] && kill -0 "$WARREN_PID" 2>/dev/null; then
        kill "$WARREN_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$WARREN_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$WARREN_PID" 2>/dev/null || true
        wait "$WARREN_PID" 2>/dev/null || true
    fi
    WARREN_PID=
}
cleanup() {
    stop_warren
    if [ -n "$DATA_DIR" ]; then
        rm -rf "$DATA_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { # host port
    (: <"/dev/tcp/$1/$2") 2>/dev/null
}

if port_open 127.0.0.1 "$PORT"; then
    die "port $PORT is already in use: choose another with --port or WARREN_PORT"
fi
DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/warren-compare.XXXXXX")
WARREN_CMD=("$WARREN_BIN" --port "$PORT" --bind 127.0.0.1 --http-port 0 --prometheus-port 0 --data-dir "$DATA_DIR"
    "${SHARD_FLAG[@]}" "${WARREN_EXTRA[@]}")
start_warren() {
    echo "== starting ${WARREN_CMD[*]}" >&2
    "${WARREN_CMD[@]}" >>"$RESULTS_DIR/warren.log" 2>&1 &
    WARREN_PID=$!
    for _ in $(seq 100); do
        port_open 127.0.0.1 "$PORT" && return 0
        kill -0 "$WARREN_PID" 2>/dev/null || {
            cat "$RESULTS_DIR/warren.log" >&2
            die "warren exited at start"
        }
        sleep 0.1
    done
    die "warren does not listen on $PORT after 10 s"
}
start_warren

# --- RabbitMQ --------------------------------------------------------------

BROKERS=(warren)
RABBIT_PID=
RABBIT_VERSION=
RABBIT_LOCAL=0
rabbit_host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$RABBIT_URI")
case "$rabbit_host" in 127.* | localhost | ::1) RABBIT_LOCAL=1 ;; esac

rabbit_up() { # a full AMQP handshake with RABBIT_URI
    timeout 20 "$LOADGEN_BIN" churn --phases connection --count 1 --uri "$RABBIT_URI" --json \
        >/dev/null 2>"$RESULTS_DIR/rabbit-check.log"
}

# RABBIT_PID: the local beam.smp (for scenario h), if RabbitMQ runs here.
find_rabbit_pid() {
    RABBIT_PID=
    [ "$RABBIT_LOCAL" = 1 ] || return 0
    if command -v rabbitmqctl >/dev/null; then
        RABBIT_PID=$(timeout 30 rabbitmqctl status 2>/dev/null |
            sed -n 's/^OS PID: *\([0-9]*\).*/\1/p' | head -1) || true
    fi
    if [ -z "$RABBIT_PID" ]; then
        RABBIT_PID=$(pgrep -o -f 'beam.smp.*rabbit' || true)
    fi
}

if [ "$WARREN_ONLY" = 1 ]; then
    echo "== RabbitMQ not used (--warren-only)" >&2
elif rabbit_up; then
    BROKERS+=(rabbit)
    find_rabbit_pid
    if [ "$RABBIT_LOCAL" = 1 ] && command -v rabbitmqctl >/dev/null; then
        RABBIT_VERSION=$(timeout 30 rabbitmqctl version 2>/dev/null | head -1) || true
    fi
else
    cat >&2 <<EOF
== RabbitMQ is not reachable at $RABBIT_URI ($(tail -1 "$RESULTS_DIR/rabbit-check.log"))
   To compare, install and start it (Debian/Ubuntu):
       apt-get install rabbitmq-server
       service rabbitmq-server start
   or point RABBIT_URI at one. Running warren alone.
EOF
fi

# --- scenarios -------------------------------------------------------------

# The loadgen arguments of scenario $1 against broker $2 (one per line).
scenario_args() {
    local timing=(--duration "$DURATION" --warmup "$WARMUP")
    case "$1" in
        a) printf '%s\n' throughput --no-ack "${timing[@]}" ;;
        c) printf '%s\n' throughput --prefetch 1000 --ack-every 100 --confirm 1000 "${timing[@]}" ;;
        d) printf '%s\n' throughput --prefetch 1000 --ack-every 100 --confirm 1000 \
            --persistent --durable "${timing[@]}" ;;
        f) printf '%s\n' throughput --exchange-type fanout --queues 4 --consumers 4 --no-ack \
            "${timing[@]}" ;;
        g) printf '%s\n' latency --rate 10000 --no-ack "${timing[@]}" ;;
        h)
            printf '%s\n' connections --connections 1000 --hold 1
            local pid=$WARREN_PID
            [ "$2" = rabbit ] && pid=$RABBIT_PID
            if [ -n "$pid" ]; then printf '%s\n' --pid "$pid"; fi
            ;;
    esac
}

# scenario TAB json key TAB label TAB better (higher|lower)
cat >"$RESULTS_DIR/metrics.tsv" <<'EOF'
a	deliver_rate	deliver msg/s	higher
c	deliver_rate	deliver msg/s	higher
c	confirm_rate	confirm msg/s	higher
d	deliver_rate	deliver msg/s	higher
f	deliver_rate	deliveries/s (4 queues)	higher
g	p99_us	p99 latency us	lower
g	p50_us	p50 latency us	lower
h	rss_per_conn_kb	RSS KiB per connection	lower
h	open_rate	connections opened/s	higher
EOF
cat >"$RESULTS_DIR/titles.tsv" <<'EOF'
a	1 queue, 1 consumer, no-ack
c	manual acks + confirms 1000
d	as c, persistent + durable
f	fanout 4 queues, 4 consumers
g	latency at 10,000 msg/s
h	1,000 idle connections
EOF

: >"$RESULTS_DIR/commands.txt"
run_one() { # scenario broker run
    local s=$1 b=$2 r=$3 uri=$WARREN_URI
    [ "$b" = rabbit ] && uri=$RABBIT_URI
    local args
    mapfile -t args < <(scenario_args "$s" "$b")
    local cmd=("${TASKSET[@]}" "$LOADGEN_BIN" "${args[@]}" --uri "$uri" --json)
    local out=$RESULTS_DIR/$s-$b-$r.json
    printf '%s %s %s\t%s\n' "$s" "$b" "$r" "${cmd[*]}" >>"$RESULTS_DIR/commands.txt"
    echo "== [$s] $b run $r/$RUNS: ${cmd[*]}" >&2
    # Generous limit: duration + warmup + setup, drain and teardown.
    local limit
    limit=$(python3 -c 'import sys; print(int(float(sys.argv[1]) + float(sys.argv[2]) + 120))' \
        "$DURATION" "$WARMUP")
    local rc=0
    timeout "$limit" "${cmd[@]}" >"$out" 2>"$RESULTS_DIR/$s-$b-$r.log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        local why
        why=$(grep -m1 -i 'error' "$RESULTS_DIR/$s-$b-$r.log" || tail -1 "$RESULTS_DIR/$s-$b-$r.log")
        [ "$rc" -eq 124 ] && why="timed out after $limit s"
        echo "   failed (exit $rc): ${why:-no output}" >&2
    fi
    if ! kill -0 "$WARREN_PID" 2>/dev/null; then
        echo "compare.sh: warren died; see $RESULTS_DIR/warren.log" >&2
        exit 1
    fi
}

# Scenario h measures how much the broker's RSS grows: memory freed by
# earlier runs and kept by its allocator would be reused and hide the growth,
# so warren is restarted before each h run. RabbitMQ (a system service) is
# restarted only if RABBIT_RESTART_CMD is set (e.g. "service rabbitmq-server
# restart"); otherwise its later runs may show less growth than its first.
RABBIT_RESTART_CMD=${RABBIT_RESTART_CMD:-}
fresh_broker() { # broker
    if [ "$1" = warren ]; then
        stop_warren
        start_warren
    elif [ -n "$RABBIT_RESTART_CMD" ]; then
        echo "== $RABBIT_RESTART_CMD" >&2
        bash -c "$RABBIT_RESTART_CMD" >&2 || echo "compare.sh: '$RABBIT_RESTART_CMD' failed" >&2
        for _ in $(seq 60); do
            rabbit_up && break
            sleep 1
        done
        find_rabbit_pid
    fi
}

for s in "${SCENARIOS[@]}"; do
    for r in $(seq "$RUNS"); do
        for b in "${BROKERS[@]}"; do
            if [ "$s" = h ]; then
                fresh_broker "$b"
            fi
            run_one "$s" "$b" "$r"
        done
    done
done

# --- report ----------------------------------------------------------------

{
    echo "machine: $(nproc) cpus, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
    echo "warren:  $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), ${WARREN_CMD[*]}"
    if [ ${#BROKERS[@]} -gt 1 ]; then
        echo "rabbit:  ${RABBIT_VERSION:-version ?} at $RABBIT_URI${RABBIT_PID:+ (beam.smp pid $RABBIT_PID)}"
    else
        echo "rabbit:  not run"
    fi
    echo "runs:    $RUNS per broker, alternating, ${DURATION} s measured after ${WARMUP} s warmup"
    echo "results: $RESULTS_DIR"
    echo
    python3 - "$RESULTS_DIR" "$RUNS" "${BROKERS[*]}" "${SCENARIOS[*]}" <<'EOF'
import json, os, statistics, sys

results, runs, brokers, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def rows(name):
    with open(os.path.join(results, name)) as f:
        return [l.rstrip("\n").split("\t") for l in f if l.strip()]

metrics = rows("metrics.tsv")
titles = dict(rows("titles.tsv"))

def load(s, b, r):
    try:
        with open(os.path.join(results, f"{s}-{b}-{r}.json")) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None

def values(s, b, key):
    out = []
    for r in range(1, runs + 1):
        j = load(s, b, r)
        if j is None or j.get("ok") is not True:
            continue
        v = j.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out

def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"

def cell(s, b, key):
    if b not in brokers:
        return "not run", None
    vs = values(s, b, key)
    if not vs:
        return "failed", None
    m = statistics.median(vs)
    text = fmt(m)
    if len(vs) < runs:
        text += f" ({len(vs)}/{runs} ok)"
    return text, m

def ratio(w, r, better):
    if w is None or r is None:
        return "-"
    if better == "higher":
        return f"{w / r:.2f}x" if r > 0 else "-"
    if w <= 0 or r <= 0:
        return "-"
    return f"{r / w:.2f}x lower" if w <= r else f"{w / r:.2f}x higher"

table = [("scenario", "metric", "warren", "rabbit", "warren vs rabbit")]
per_run = []
for s in scenarios:
    for ms, key, label, better in metrics:
        if ms != s:
            continue
        wt, w = cell(s, "warren", key)
        rt, r = cell(s, "rabbit", key)
        table.append((f"{s}: {titles.get(s, '')}", label, wt, rt, ratio(w, r, better)))
        for b in brokers:
            vs = []
            for i in range(1, runs + 1):
                j = load(s, b, i)
                v = None if j is None else j.get(key)
                ok = j is not None and j.get("ok") is True
                vs.append(fmt(float(v)) if ok and isinstance(v, (int, float)) else "failed")
            per_run.append(f"  {s} {key:<16} {b:<6} {', '.join(vs)}")

widths = [max(len(row[i]) for row in table) for i in range(5)]
for n, row in enumerate(table):
    print("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)).rstrip())
    if n == 0:
        print("  ".join("-" * w for w in widths))
print()
print("medians of the runs that succeeded; warren vs rabbit: throughput = warren/rabbit")
print("(above 1 = warren faster); latency and memory = how many times lower (or higher) warren's is")
print()
print("per run:")
print("\n".join(per_run))
EOF
    echo
    echo "loadgen commands (run r = 1..$RUNS, alternating warren, rabbit):"
    awk -F'\t' '{ split($1, k, " "); if (k[3] == 1) print "  " k[1] " " k[2] ": " $2 }' "$RESULTS_DIR/commands.txt"
} | tee "$RESULTS_DIR/summary.txt"
