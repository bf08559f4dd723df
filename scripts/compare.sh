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
# Scenarios (1 producer, 16 B bodies, except m):
#   a  1 queue, 1 consumer, no-ack, unlimited rate         -> deliveries/s
#   c  as a, manual acks (prefetch 1000, ack every 100,
#      multiple) + confirms (1000 outstanding)             -> deliveries/s
#   d  as c, persistent messages, durable queue            -> deliveries/s
#   f  fanout to 4 queues, 4 consumers, no-ack             -> deliveries/s (all queues)
#   g  latency at a fixed 10,000 msg/s, no-ack             -> p50, p99 (us), broker
#                                                             CPU (% of a core, us/msg)
#   h  broker RSS per idle connection, 1,000 connections   -> KiB per connection
#   l  as g at 1,000 msg/s                                 -> as g
#   m  many connections (warren-loadgen fleet): 10,000
#      publisher connections x 1 msg/s with confirms,
#      1,000 consumer connections on 1,000 queues (manual
#      acks, prefetch 100)                                 -> p50, p99 (us), broker
#                                                             CPU, RSS (MiB, KiB/conn)
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
#   --no-build        NO_BUILD=1     use the binaries in $CARGO_TARGET_DIR/release
#                                    (default target/release) as they are
#   CARGO_TARGET_DIR  where cargo builds and the binaries are (default target)
#   WARREN_ARGS      extra warren flags, e.g. "--shards 1" or "--no-pin"
#                    (warren pins its shard threads to cores by default)
#   LOADGEN_TASKSET  prefix for every loadgen command, e.g. "taskset -c 1"
#   RABBIT_RESTART_CMD  run before each RabbitMQ run of scenarios h and m,
#                    e.g. "service rabbitmq-server restart" (warren is always
#                    restarted before each h and m run: a fresh allocator)
#   FLEET_CONNECTIONS, FLEET_CONSUMERS  scenario m's publisher and consumer
#                    connections (default 10000 and 1000)
#
# Scenarios g, h, l and m need the broker's pid (memory, and CPU from
# /proc/PID/task/*/schedstat): warren's is known; for RabbitMQ it is the
# beam.smp process, found with `rabbitmqctl status` (OS PID) or pgrep, and only
# when RABBIT_URI points at this machine (else h's cells say "failed" and g,
# l and m show no CPU or memory figures).
#
# Scenario m needs 11,000 connections, so a file descriptor each, on both
# sides. The script raises its own soft limit (and so the loadgen's and
# warren's) to the hard limit; the loadgen warns if that is too low. RabbitMQ
# keeps the limit it was started with and takes sockets up to about 90% of it
# (`rabbitmqctl status`: "Sockets: ..., limit: ..."); the Debian package's
# service starts it with 1024 (832 sockets). If beam.smp's limit
# (/proc/PID/limits, "Max open files") is too low, RabbitMQ's m runs are
# skipped and its cells say "failed". To raise it, restart RabbitMQ from a
# shell with a higher limit, as root (at most the hard limit, `ulimit -Hn`):
#     rabbitmqctl stop
#     cd /var/lib/rabbitmq && setsid setpriv --reuid=rabbitmq --regid=rabbitmq \
#         --init-groups env HOME=/var/lib/rabbitmq \
#         sh -c 'ulimit -n 20000; exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached'
# (as the rabbitmq user directly: /usr/sbin/rabbitmq-server, run as root,
# switches user with su, which set the soft limit back to 1024 on the
# Debian test machine; with systemd, LimitNOFILE= in the unit does it).

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
FLEET_CONNECTIONS=${FLEET_CONNECTIONS:-10000}
FLEET_CONSUMERS=${FLEET_CONSUMERS:-1000}
ALL_SCENARIOS="a c d f g h l m"

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
for v in FLEET_CONNECTIONS FLEET_CONSUMERS; do
    case "${!v}" in '' | *[!0-9]*) die "$v must be a number" ;; esac
done

command -v python3 >/dev/null || die "python3 is needed to read the JSON results"

read -r -a WARREN_EXTRA <<<"$WARREN_ARGS"
read -r -a TASKSET <<<"$LOADGEN_TASKSET"
# --shards from WARREN_ARGS wins (clap refuses a repeated flag).
SHARD_FLAG=(--shards "$SHARDS")
for a in "${WARREN_EXTRA[@]}"; do
    case "$a" in --shards | --shards=*) SHARD_FLAG=() ;; esac
done

# Where cargo puts the binaries (CARGO_TARGET_DIR, relative to the root).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

if [ -z "$RESULTS_DIR" ]; then
    RESULTS_DIR=$TARGET_DIR/compare/$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)

WARREN_BIN=$TARGET_DIR/release/warren
LOADGEN_BIN=$TARGET_DIR/release/warren-loadgen
WARREN_URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"

if [ "$NO_BUILD" != 1 ]; then
    echo "== cargo build --release -p warren -p warren-loadgen" >&2
    cargo build --release -p warren -p warren-loadgen >&2
fi
for bin in "$WARREN_BIN" "$LOADGEN_BIN"; do
    [ -x "$bin" ] || die "missing $bin (build it, or drop --no-build)"
done

# Many connections (scenario m): a file descriptor each, for warren and the
# loadgen (which raises its own soft limit too).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Scenario m's connections, and the file descriptors a broker needs for them.
FLEET_TOTAL=$((FLEET_CONNECTIONS + FLEET_CONSUMERS))
FLEET_FDS=$(((FLEET_TOTAL + 10) * 10 / 9 + 100))

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
        h) printf '%s\n' connections --connections 1000 --hold 1 ;;
        l) printf '%s\n' latency --rate 1000 --no-ack "${timing[@]}" ;;
        m) printf '%s\n' fleet --connections "$FLEET_CONNECTIONS" --rate-per-conn 1 \
            --consumers "$FLEET_CONSUMERS" "${timing[@]}" ;;
    esac
    # The broker's pid: its memory (h, m) and CPU (g, l, m).
    case "$1" in
        g | h | l | m)
            local pid=$WARREN_PID
            [ "$2" = rabbit ] && pid=$RABBIT_PID
            if [ -n "$pid" ]; then printf '%s\n' --pid "$pid"; fi
            ;;
    esac
}

# Why RabbitMQ cannot run scenario $1 (empty: it can): scenario m needs
# more file descriptors than the beam.smp process may have.
rabbit_skip_reason() {
    [ "$1" = m ] || return 0
    [ -n "$RABBIT_PID" ] && [ -r "/proc/$RABBIT_PID/limits" ] || return 0
    local soft
    soft=$(awk '/^Max open files/ { print $4 }' "/proc/$RABBIT_PID/limits")
    case "$soft" in '' | *[!0-9]*) return 0 ;; esac
    if [ "$soft" -lt "$FLEET_FDS" ]; then
        echo "beam.smp (pid $RABBIT_PID) may open $soft files, $FLEET_TOTAL connections need about $FLEET_FDS: restart RabbitMQ with a higher limit (see the top of scripts/compare.sh)"
    fi
}

# scenario TAB json key TAB label TAB better (higher|lower) [TAB "also failed"]
# "also failed": when no run succeeded, the figure of the failed runs that
# have it is still shown, marked "(run failed)": a broker that fell behind in
# m (every message must arrive) still had its memory and CPU measured; its
# latencies, of the messages that did arrive, are not shown.
cat >"$RESULTS_DIR/metrics.tsv" <<'EOF'
a	deliver_rate	deliver msg/s	higher
c	deliver_rate	deliver msg/s	higher
c	confirm_rate	confirm msg/s	higher
d	deliver_rate	deliver msg/s	higher
f	deliver_rate	deliveries/s (4 queues)	higher
g	p50_us	p50 latency us	lower
g	p99_us	p99 latency us	lower
g	broker_cpu_pct	broker CPU % of a core	lower
g	broker_cpu_us_per_msg	broker CPU us/msg	lower
h	rss_per_conn_kb	RSS KiB per connection	lower
h	open_rate	connections opened/s	higher
l	p50_us	p50 latency us	lower
l	p99_us	p99 latency us	lower
l	broker_cpu_pct	broker CPU % of a core	lower
l	broker_cpu_us_per_msg	broker CPU us/msg	lower
m	p50_us	p50 latency us	lower
m	p99_us	p99 latency us	lower
m	confirm_p99_us	p99 confirm latency us	lower
m	broker_cpu_pct	broker CPU % of a core	lower	also failed
m	broker_cpu_us_per_msg	broker CPU us/msg	lower
m	rss_end_mib	broker RSS MiB (end)	lower	also failed
m	rss_per_conn_kb	RSS KiB per connection	lower	also failed
m	open_rate	connections opened/s	higher	also failed
EOF
cat >"$RESULTS_DIR/titles.tsv" <<EOF
a	1 queue, 1 consumer, no-ack
c	manual acks + confirms 1000
d	as c, persistent + durable
f	fanout 4 queues, 4 consumers
g	latency at 10,000 msg/s
h	1,000 idle connections
l	latency at 1,000 msg/s
m	fleet: $FLEET_CONNECTIONS publishers x 1 msg/s + $FLEET_CONSUMERS consumers
EOF

: >"$RESULTS_DIR/commands.txt"
: >"$RESULTS_DIR/notes.txt"
run_one() { # scenario broker run
    local s=$1 b=$2 r=$3 uri=$WARREN_URI
    [ "$b" = rabbit ] && uri=$RABBIT_URI
    local args
    mapfile -t args < <(scenario_args "$s" "$b")
    local cmd=("${TASKSET[@]}" "$LOADGEN_BIN" "${args[@]}" --uri "$uri" --json)
    local out=$RESULTS_DIR/$s-$b-$r.json
    printf '%s %s %s\t%s\n' "$s" "$b" "$r" "${cmd[*]}" >>"$RESULTS_DIR/commands.txt"
    if [ "$b" = rabbit ]; then
        local skip
        skip=$(rabbit_skip_reason "$s")
        if [ -n "$skip" ]; then
            echo "== [$s] $b run $r/$RUNS: skipped: $skip" >&2
            echo '{"ok":false,"skipped":true}' >"$out"
            echo "skipped: $skip" >"$RESULTS_DIR/$s-$b-$r.log"
            grep -qF "[$s] $b: $skip" "$RESULTS_DIR/notes.txt" ||
                echo "[$s] $b: $skip" >>"$RESULTS_DIR/notes.txt"
            return 0
        fi
    fi
    echo "== [$s] $b run $r/$RUNS: ${cmd[*]}" >&2
    # Generous limit: duration + warmup + setup, drain and teardown (m:
    # opening and closing 11,000 connections, declaring and deleting 1,000
    # queues, and the retries of a broker that takes connections slowly).
    local extra=120
    [ "$s" = m ] && extra=600
    local limit
    limit=$(python3 -c 'import sys; print(int(float(sys.argv[1]) + float(sys.argv[2]) + int(sys.argv[3])))' \
        "$DURATION" "$WARMUP" "$extra")
    local rc=0
    timeout "$limit" "${cmd[@]}" >"$out" 2>"$RESULTS_DIR/$s-$b-$r.log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        local why
        why=$(grep -m1 -i 'error' "$RESULTS_DIR/$s-$b-$r.log" || tail -1 "$RESULTS_DIR/$s-$b-$r.log")
        [ "$rc" -eq 124 ] && why="timed out after $limit s"
        echo "   failed (exit $rc): ${why:-no output}" >&2
        echo "[$s] $b run $r failed (exit $rc): ${why:-no output}" >>"$RESULTS_DIR/notes.txt"
    fi
    if ! kill -0 "$WARREN_PID" 2>/dev/null; then
        echo "compare.sh: warren died; see $RESULTS_DIR/warren.log" >&2
        exit 1
    fi
}

# Scenarios h and m measure how much the broker's RSS grows: memory freed by
# earlier runs and kept by its allocator would be reused and hide the growth,
# so warren is restarted before each h and m run. RabbitMQ (a system service) is
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
            if [ "$s" = h ] || [ "$s" = m ]; then
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

def get(j, key):
    """The value of `key`; `x_mib` is derived from `x_kb`."""
    if key not in j and key.endswith("_mib"):
        kb = j.get(key[:-4] + "_kb")
        return kb / 1024 if isinstance(kb, (int, float)) and not isinstance(kb, bool) else None
    return j.get(key)

def values(s, b, key):
    out = []
    for r in range(1, runs + 1):
        j = load(s, b, r)
        if j is None or j.get("ok") is not True:
            continue
        v = get(j, key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out

def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"

def failed_values(s, b, key):
    """`key` of the runs that failed but measured it (not skipped)."""
    out = []
    for r in range(1, runs + 1):
        j = load(s, b, r)
        if j is None or j.get("ok") is True or j.get("skipped"):
            continue
        v = get(j, key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out

def cell(s, b, key, also_failed):
    if b not in brokers:
        return "not run", None
    vs = values(s, b, key)
    if not vs:
        # Runs that succeeded but have no such figure (e.g. no --pid for a
        # remote RabbitMQ) are "-", not failures.
        ok = [j for j in (load(s, b, r) for r in range(1, runs + 1)) if j and j.get("ok") is True]
        if ok:
            return "-", None
        fv = failed_values(s, b, key) if also_failed else []
        if fv:
            m = statistics.median(fv)
            return f"{fmt(m)} (run failed)", m
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
    for ms, key, label, better, *flags in metrics:
        if ms != s:
            continue
        also_failed = "also failed" in flags
        wt, w = cell(s, "warren", key, also_failed)
        rt, r = cell(s, "rabbit", key, also_failed)
        table.append((f"{s}: {titles.get(s, '')}", label, wt, rt, ratio(w, r, better)))
        for b in brokers:
            vs = []
            for i in range(1, runs + 1):
                j = load(s, b, i)
                v = None if j is None else get(j, key)
                ok = j is not None and j.get("ok") is True
                if not ok:
                    failed_v = isinstance(v, (int, float)) and not isinstance(v, bool) and also_failed
                    vs.append(f"failed ({fmt(float(v))})" if failed_v and not j.get("skipped") else "failed")
                else:
                    vs.append(fmt(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-")
            per_run.append(f"  {s} {key:<22} {b:<6} {', '.join(vs)}")

widths = [max(len(row[i]) for row in table) for i in range(5)]
for n, row in enumerate(table):
    print("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)).rstrip())
    if n == 0:
        print("  ".join("-" * w for w in widths))
print()
print("medians of the runs that succeeded (\"run failed\": of runs that failed, see the notes);")
print("warren vs rabbit: throughput = warren/rabbit")
print("(above 1 = warren faster); latency and memory = how many times lower (or higher) warren's is")
print()
print("per run:")
print("\n".join(per_run))
with open(os.path.join(results, "notes.txt")) as f:
    notes = f.read().strip()
if notes:
    print()
    print("notes:")
    print("\n".join("  " + l for l in notes.splitlines()))
EOF
    echo
    echo "loadgen commands (run r = 1..$RUNS, alternating warren, rabbit):"
    awk -F'\t' '{ split($1, k, " "); if (k[3] == 1) print "  " k[1] " " k[2] ": " $2 }' "$RESULTS_DIR/commands.txt"
} | tee "$RESULTS_DIR/summary.txt"
