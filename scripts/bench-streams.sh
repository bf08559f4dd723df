#!/usr/bin/env bash
# Streams, warren vs RabbitMQ, with warren-loadgen (issue 17's figures).
#
# Usage: scripts/bench-streams.sh
#
# For each broker (a warren started here on WARREN_PORT with a fresh data
# dir, then the RabbitMQ at RABBIT_URI, whose rabbitmq_stream plugin must be
# enabled: `rabbitmq-plugins enable rabbitmq_stream`):
#   1. publish: one producer, 16 B bodies, publisher confirms (1,000
#      outstanding) into a fresh stream, RUNS runs of DURATION s (warren
#      confirms after fsync; RabbitMQ's osiris does not fsync);
#   2. fill the stream up to MESSAGES messages (the same publishing);
#   3. replay from `first`: 1 consumer, then 100 consumers, each RUNS runs
#      of DURATION s (prefetch 1,000, ack every 100), the broker's RSS
#      sampled every 250 ms (max over the run).
# Prints a table of medians; each run's --json line is kept in RESULTS_DIR.
#
# Environment: WARREN_PORT (5681), WARREN_SHARDS (nproc), RABBIT_URI
# (amqp://guest:guest@127.0.0.1:5672/%2f), RUNS (3), DURATION (5), MESSAGES
# (10000000), WARREN_ONLY=1, NO_BUILD=1, RESULTS_DIR
# (target/bench-streams/<timestamp>), RABBIT_PID (found with pgrep beam.smp).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WARREN_PORT=${WARREN_PORT:-5681}
WARREN_SHARDS=${WARREN_SHARDS:-$(nproc)}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5672/%2f}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
MESSAGES=${MESSAGES:-10000000}
RESULTS_DIR=${RESULTS_DIR:-target/bench-streams/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
BIN=${CARGO_TARGET_DIR:-target}/release
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -q -p warren -p warren-loadgen
fi
LG="$BIN/warren-loadgen"
DATA=$(mktemp -d /tmp/warren-bench-streams.XXXXXX)
WPID=
cleanup() {
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

# rss_max PID FILE: samples PID's RSS (KiB) every 250 ms into FILE's max
# until killed.
rss_max() {
    local m=0 r
    while :; do
        r=$(ps -o rss= -p "$1" 2>/dev/null | tr -d ' ') || true
        [ -n "$r" ] && [ "$r" -gt "$m" ] && m=$r && echo "$m" > "$2"
        sleep 0.25
    done
}

# run NAME URI PID ARGS...: one loadgen run, its JSON kept; prints the
# file.
run() {
    local name=$1 uri=$2 pid=$3
    shift 3
    local out="$RESULTS_DIR/$name.json" rss="$RESULTS_DIR/$name.rss"
    echo 0 > "$rss"
    rss_max "$pid" "$rss" &
    local sampler=$!
    "$LG" throughput --uri "$uri" --json "$@" > "$out" 2> "$RESULTS_DIR/$name.log" || true
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    echo "$out"
}

# bench BROKER URI PID: the scenarios against one broker.
bench() {
    local b=$1 uri=$2 pid=$3 q="bench-stream-$$-$1"
    for i in $(seq 1 "$RUNS"); do
        run "$b-publish-$i" "$uri" "$pid" --stream --queue "$q" --consumers 0 \
            --confirm 1000 --duration "$DURATION" --warmup 1 > /dev/null
    done
    # Fill up to MESSAGES (at the rate just measured, plus a margin).
    local have rate secs
    have=$(python3 - "$RESULTS_DIR" "$b" <<'PY'
import json, sys, glob
n = 0
for f in glob.glob(f"{sys.argv[1]}/{sys.argv[2]}-publish-*.json"):
    try: n += json.load(open(f))["confirmed"]
    except Exception: pass
print(n)
PY
)
    rate=$(python3 -c "import json;print(max(1,int(json.load(open('$RESULTS_DIR/$b-publish-1.json'))['publish_rate'])))" 2>/dev/null || echo 100000)
    if [ "$have" -lt "$MESSAGES" ]; then
        secs=$(( (MESSAGES - have) / rate + 2 ))
        echo "$b: filling the stream with $((MESSAGES - have)) more messages (~${secs} s)" >&2
        run "$b-fill" "$uri" "$pid" --stream --queue "$q" --consumers 0 --confirm 1000 \
            --duration "$secs" --warmup 0 > /dev/null
    fi
    for c in 1 100; do
        for i in $(seq 1 "$RUNS"); do
            run "$b-replay$c-$i" "$uri" "$pid" --stream --queue "$q" --producers 0 \
                --consumers "$c" --prefetch 1000 --ack-every 100 \
                --duration "$DURATION" --warmup 1 > /dev/null
        done
    done
}

# warren
"$BIN/warren" --port "$WARREN_PORT" --http-port 0 --prometheus-port 0 --data-dir "$DATA" \
    --shards "$WARREN_SHARDS" --log-level warn > "$RESULTS_DIR/warren.log" 2>&1 &
WPID=$!
for _ in $(seq 1 100); do
    (echo > /dev/tcp/127.0.0.1/"$WARREN_PORT") 2>/dev/null && break
    sleep 0.1
done
bench warren "amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f" "$WPID"
du -sb "$DATA/streams" | cut -f1 > "$RESULTS_DIR/warren.disk"
kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=

if [ -z "${WARREN_ONLY:-}" ]; then
    RPID=${RABBIT_PID:-$(pgrep -f beam.smp | head -1 || true)}
    if [ -n "$RPID" ]; then
        bench rabbit "$RABBIT_URI" "$RPID"
    else
        echo "RabbitMQ not running: warren only" >&2
    fi
fi

python3 - "$RESULTS_DIR" "$MESSAGES" <<'PY'
import glob, json, statistics, sys, os
d, messages = sys.argv[1], int(sys.argv[2])
def runs(b, kind):
    out = []
    for f in sorted(glob.glob(f"{d}/{b}-{kind}-*.json")):
        try:
            j = json.load(open(f))
        except Exception:
            continue
        rss = int(open(f[:-5] + ".rss").read().strip() or 0)
        out.append((j["publish_rate"] if kind == "publish" else j["deliver_rate"], rss))
    return out
def med(xs):
    return statistics.median(xs) if xs else None
rows = [("publish, confirms", "publish"), ("replay, 1 consumer", "replay1"), ("replay, 100 consumers", "replay100")]
print(f"{'scenario':<24}{'warren msg/s':>16}{'RabbitMQ msg/s':>16}{'ratio':>8}{'warren RSS':>12}{'RabbitMQ RSS':>14}")
for label, kind in rows:
    w, r = runs("warren", kind), runs("rabbit", kind)
    wm, rm = med([x for x, _ in w]), med([x for x, _ in r])
    wr, rr = med([y for _, y in w]), med([y for _, y in r])
    ratio = f"{wm / rm:.1f}x" if wm and rm else "-"
    f = lambda v: f"{v:,.0f}" if v else "-"
    g = lambda v: f"{v / 1024:,.0f} MiB" if v else "-"
    print(f"{label:<24}{f(wm):>16}{f(rm):>16}{ratio:>8}{g(wr):>12}{g(rr):>14}")
print(f"(medians of the runs in {d}; the streams held >= {messages:,} messages when replayed)")
PY
