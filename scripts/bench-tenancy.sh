#!/usr/bin/env bash
# Measures what multi-tenancy and TLS cost on the publish path (issue 12):
# scenario a (no-ack) and c (acks + confirms) with
#   plain: a fresh broker, loadgen as guest on vhost /;
#   tenants: the broker loaded with 100 users x 10 vhosts of permissions
#            (--definitions), loadgen as u42 on vhost v7 with regex patterns;
#   tls: a fresh broker with a TLS listener, loadgen over amqps.
# Runs alternate (plain, tenants, tls, plain, ...) ROUNDS times; prints one
# line per run and the medians. Release build; ports 25672-25674.
# Usage: ROUNDS=3 DURATION=5 scripts/bench-tenancy.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
[ "${1:-}" = "--no-build" ] || cargo build --release -q -p warren -p warren-loadgen
W=target/release/warren
L=target/release/warren-loadgen
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT

python3 - "$T/defs.json" <<'PY'
import json, sys
users = [{"name": f"u{i}", "password": "pw", "tags": ""} for i in range(100)]
vhosts = [{"name": f"v{j}"} for j in range(10)]
perms = [{"user": f"u{i}", "vhost": f"v{j}",
          "configure": f"^(loadgen|u{i}-).*", "write": r"^(amq\.default|loadgen.*)$",
          "read": "^loadgen.*"} for i in range(100) for j in range(10)]
json.dump({"users": users, "vhosts": vhosts, "permissions": perms}, open(sys.argv[1], "w"))
PY
# A CA and a server certificate it signs (rustls refuses a CA as end entity).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca-key.pem" -out "$T/ca.pem" \
  -days 1 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/server.csr" \
  -subj "/CN=127.0.0.1" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n' > "$T/ext.cnf"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" \
  -CAcreateserial -out "$T/cert.pem" -days 1 -extfile "$T/ext.cnf" 2>/dev/null

start() { # name port extra-args...
  local name=$1 port=$2; shift 2
  rm -rf "$T/data-$name"
  "$W" --port "$port" --http-port 0 --prometheus-port 0 --bind 127.0.0.1 --data-dir "$T/data-$name" --log-level warn "$@" &
  echo $! > "$T/pid-$name"
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0; sleep 0.1
  done
  echo "broker $name did not start" >&2; exit 1
}
stop() { kill "$(cat "$T/pid-$1")"; wait "$(cat "$T/pid-$1")" 2>/dev/null || true; }

run() { # label uri scenario extra...
  local label=$1 uri=$2 sc=$3; shift 3
  local opts="--no-ack"
  [ "$sc" = c ] && opts="--prefetch 1000 --ack-every 100 --confirm 1000"
  # shellcheck disable=SC2086
  local out; out=$("$L" throughput --size 16 $opts --duration "$DURATION" --warmup 1 --uri "$uri" --json "$@" 2>/dev/null)
  local rate; rate=$(python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(int(d.get("deliver_rate") or d.get("consume_rate") or d.get("recv_rate") or 0))' <<<"$out")
  echo "$label $sc $rate"
  echo "$label $sc $rate" >> "$T/results"
}

for r in $(seq "$ROUNDS"); do
  for sc in a c; do
    start plain 25672; run plain amqp://guest:guest@127.0.0.1:25672/%2f $sc; stop plain
    start tenants 25673 --definitions "$T/defs.json"
    run tenants amqp://u42:pw@127.0.0.1:25673/v7 $sc; stop tenants
    start tls 25674 --tls-port 25675 --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"
    run tls amqps://guest:guest@127.0.0.1:25675/%2f $sc --tls-ca "$T/ca.pem"; stop tls
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
