#!/usr/bin/env bash
# Runs Node AMQP client libraries' own test suites against warren (or another
# broker) and prints pass/fail/skip counts per suite. Not part of `cargo test`.
#
#   scripts/client-suites/node.sh                    # build warren, start it on a free port
#   BROKER_PORT=5672 scripts/client-suites/node.sh   # use a broker already running there
#   scripts/client-suites/node.sh amqplib            # only some suites
#
# Suites (sources are not fetched here; put each repository's tree in
# $SUITES_DIR/<name>, e.g. `git archive HEAD | tar -x -C target/client-suites/amqplib`):
#   amqplib          github.com/amqp-node/amqplib          node --test (test/*.test.js)
#   amqp-client.js   github.com/cloudamqp/amqp-client.js   vitest (test/*.ts minus tls.ts)
#   rabbitmq-client  github.com/cody-greene/node-rabbitmq-client  node --test / tape
#   amqplib-npm      npm's amqplib@0.10.9, the last release that ships its tests
#                    (mocha); downloaded with `npm pack` when missing.
# Each suite's dev dependencies are installed with `npm install --ignore-scripts`.
# Last checked (warren and RabbitMQ 3.10.8 alike, all passing) with amqplib
# f7503e5, amqp-client.js 67b3ba3 (and v3.4.1, v2.1.1), rabbitmq-client 2729343
# (and v4.4.0, v3.1.3, run with tape), amqplib-npm 0.10.9.
#
# The suites hard-code localhost:5672 in places, so every Node process is
# started with redirect-port.js, which sends connections for port 5672 to
# the broker's port. Skipped on purpose: amqp-client.js's test/tls.ts (TLS);
# its websocket tests only construct clients.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
suites_dir=${SUITES_DIR:-$root/target/client-suites}
logs=$suites_dir/logs
redirect=$root/scripts/client-suites/redirect-port.js
mkdir -p "$logs"

warren_pid=
cleanup() {
    [ -n "$warren_pid" ] && kill "$warren_pid" 2>/dev/null
    [ -n "${data_dir:-}" ] && rm -rf "$data_dir"
}
trap cleanup EXIT

if [ -n "${BROKER_PORT:-}" ]; then
    port=$BROKER_PORT
    echo "using the broker on 127.0.0.1:$port"
else
    (cd "$root" && cargo build -q) || exit 1
    data_dir=$(mktemp -d)
    "$root/target/debug/warren" --port 0 --http-port 0 --prometheus-port 0 --data-dir "$data_dir" --shards 2 --no-pin \
        >"$logs/warren.log" 2>&1 &
    warren_pid=$!
    for _ in $(seq 50); do
        port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$logs/warren.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "warren did not start"; cat "$logs/warren.log"; exit 1; }
    echo "warren on 127.0.0.1:$port (log: $logs/warren.log)"
fi
url=amqp://guest:guest@127.0.0.1:$port
export URL=$url AMQP_URL=$url RABBITMQ_URL=$url
export AMQP_REDIRECT_TO=$port NODE_OPTIONS="--require $redirect" NO_COLOR=1 FORCE_COLOR=0

deps() {
    [ -d node_modules ] || npm install --ignore-scripts --no-audit --no-fund >/dev/null 2>&1
}

# Counts from the common reporters' summaries: "pass fail skip".
counts() {
    local f=$1
    if grep -q '^# pass' "$f"; then # TAP: node --test, tape
        awk '/^# pass/{p=$3} /^# fail/{f=$3} /^# (skipped|todo)/{s+=$3} /^# cancelled/{f+=$3}
             END{print p+0, f+0, s+0}' "$f"
    elif grep -qE '^ *Tests +[0-9]' "$f"; then # vitest
        grep -E '^ *Tests +[0-9]' "$f" | tail -1 | awk '{for(i=1;i<=NF;i++){
            if($(i+1)~/^passed/)p=$i; if($(i+1)~/^failed/)f=$i; if($(i+1)~/^(skipped|todo)/)s+=$i}}
            END{print p+0, f+0, s+0}'
    else # mocha
        awk '/ passing/{p=$1} / failing/{f=$1} / pending/{s=$1} END{print p+0, f+0, s+0}' "$f"
    fi
}

run_amqplib() {
    local d=$suites_dir/amqplib
    [ -d "$d/test" ] || return 2
    cd "$d" && deps && node --test --test-timeout=${TEST_TIMEOUT_MS:-5000} --test-reporter=tap
}

run_amqp_client() {
    local d=$suites_dir/amqp-client.js
    [ -d "$d/test" ] || return 2
    cd "$d" && deps && npx vitest run $(ls test/*.ts | grep -v '/tls\.ts$')
}

run_rabbitmq_client() {
    local d=$suites_dir/rabbitmq-client
    [ -d "$d/test" ] || return 2
    cd "$d" && deps
    if grep -q '"test": *"node -r ts-node/register --test' package.json; then
        node -r ts-node/register --test --test-reporter=tap test/*.ts
    else
        node -r ts-node/register node_modules/.bin/tape test/*.ts
    fi
}

run_amqplib_npm() {
    local d=$suites_dir/amqplib-npm
    if [ ! -d "$d/test" ]; then
        local tmp
        tmp=$(mktemp -d)
        (cd "$tmp" && npm pack amqplib@0.10.9 >/dev/null 2>&1 && tar xzf amqplib-0.10.9.tgz) &&
            mv "$tmp/package" "$d"
        rm -rf "$tmp"
        [ -d "$d/test" ] || return 2
    fi
    cd "$d" && deps && ./node_modules/.bin/mocha --check-leaks -u tdd --exit test/
}

all=(amqplib amqp-client.js rabbitmq-client amqplib-npm)
selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${all[@]}")

summary=()
status=0
for s in "${selected[@]}"; do
    log=$logs/$s.txt
    case $s in
    amqplib) fn=run_amqplib ;;
    amqp-client.js) fn=run_amqp_client ;;
    rabbitmq-client) fn=run_rabbitmq_client ;;
    amqplib-npm) fn=run_amqplib_npm ;;
    *) echo "unknown suite $s (known: ${all[*]})"; exit 2 ;;
    esac
    echo "== $s"
    (timeout "${SUITE_TIMEOUT:-900}" bash -c "$(declare -f deps $fn); suites_dir=$suites_dir; $fn") \
        >"$log" 2>&1
    rc=$?
    if [ $rc -eq 2 ] && [ ! -d "$suites_dir/$s/test" ]; then
        summary+=("$(printf '%-16s missing: put its sources in %s' "$s" "$suites_dir/$s")")
        continue
    fi
    read -r pass fail skip < <(counts "$log")
    [ $rc -ne 0 ] || [ "$fail" -ne 0 ] && status=1
    summary+=("$(printf '%-16s pass %4d  fail %3d  skip %3d  (exit %d, log %s)' \
        "$s" "$pass" "$fail" "$skip" "$rc" "$log")")
done

echo
echo "Summary against 127.0.0.1:$port"
printf '%s\n' "${summary[@]}"
exit $status
