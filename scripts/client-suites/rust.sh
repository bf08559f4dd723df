#!/usr/bin/env bash
# Runs Rust AMQP client libraries' own tests against warren (or another
# broker) and prints pass/fail/skip counts per suite. Not part of `cargo test`.
#
#   scripts/client-suites/rust.sh                    # build warren, start it on a free port
#   BROKER_PORT=5672 scripts/client-suites/rust.sh   # use a broker already running there
#
# Sources are not fetched here; put each repository's tree in $SUITES_DIR/<name>:
#   lapin    github.com/amqp-rs/lapin   `cargo test --tests`, broker from AMQP_ADDR
#   amqprs   github.com/gftea/amqprs    `cargo test -p amqprs --lib --tests` with the
#            features of its regression_test.sh except tls. Its tests expect
#            localhost:5672 as user/bitnami: patch-amqprs.sh (run here once, marked
#            by .warren-patched) makes them use $AMQP_PORT as guest/guest.
# Last checked with lapin 70611e8 and amqprs 5d2f8b3.
# Known failure on any broker: amqprs's test_open_amqp_connection logs in with
# RabbitMQ's RABBIT-CR-DEMO mechanism, which is not enabled by default.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
suites_dir=${SUITES_DIR:-$root/target/client-suites}
logs=$suites_dir/logs
mkdir -p "$logs"
export CARGO_TARGET_DIR=${CLIENT_TARGET_DIR:-$suites_dir/rust-target}

warren_pid=
cleanup() {
    [ -n "$warren_pid" ] && kill "$warren_pid" 2>/dev/null
    [ -n "${data_dir:-}" ] && rm -rf "$data_dir"
}
trap cleanup EXIT

if [ -n "${BROKER_PORT:-}" ]; then
    port=$BROKER_PORT
else
    (cd "$root" && env -u CARGO_TARGET_DIR cargo build -q) || exit 1
    data_dir=$(mktemp -d)
    "$root/target/debug/warren" --port 0 --http-port 0 --prometheus-port 0 --data-dir "$data_dir" --shards 2 --no-pin \
        >"$logs/warren-rust.log" 2>&1 &
    warren_pid=$!
    for _ in $(seq 50); do
        port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$logs/warren-rust.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "warren did not start"; exit 1; }
fi
echo "broker on 127.0.0.1:$port"
export AMQP_ADDR=amqp://guest:guest@127.0.0.1:$port/%2f AMQP_PORT=$port

counts() {
    awk '/^test result:/{p+=$4; f+=$6; s+=$8} END{print p+0, f+0, s+0}' "$1"
}

summary=()
status=0
for s in lapin amqprs; do
    d=$suites_dir/$s
    if [ ! -f "$d/Cargo.toml" ]; then
        summary+=("$(printf '%-8s missing: put its sources in %s' "$s" "$d")")
        continue
    fi
    echo "== $s"
    case $s in
    lapin)
        # Keep it out of warren's workspace when it sits under target/.
        grep -q '^\[workspace\]' "$d/Cargo.toml" || printf '\n[workspace]\n' >>"$d/Cargo.toml"
        (cd "$d" && timeout 1800 cargo test --no-fail-fast --tests) >"$logs/$s.txt" 2>&1
        ;;
    amqprs)
        [ -f "$d/.warren-patched" ] ||
            { "$root/scripts/client-suites/patch-amqprs.sh" "$d" && touch "$d/.warren-patched"; }
        (cd "$d" && timeout 1800 cargo test --no-fail-fast -p amqprs \
            -F traces,compliance_assert,urispec --lib --tests) >"$logs/$s.txt" 2>&1
        ;;
    esac
    rc=$?
    read -r pass fail skip < <(counts "$logs/$s.txt")
    [ $rc -ne 0 ] && status=1
    summary+=("$(printf '%-8s pass %4d  fail %3d  skip %3d  (exit %d, log %s)' \
        "$s" "$pass" "$fail" "$skip" "$rc" "$logs/$s.txt")")
done

echo
echo "Summary against 127.0.0.1:$port"
printf '%s\n' "${summary[@]}"
exit $status
