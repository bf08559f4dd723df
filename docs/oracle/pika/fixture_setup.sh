#!/bin/bash
# Section 7: build the definitions-export fixture on a freshly reset node.
#   bash fixture_setup.sh [OUT.json]
# Passwords (plaintext) of the fixture users:
#   guest/guest (administrator, default), admin1/admin1-pass (administrator),
#   mon1/mon1-pass (monitoring,policymaker), free1/free1-pass (free-form tag),
#   nopw1 (password cleared: no password hash, PLAIN login impossible)
set -e
CTL=${CTL:-rabbitmqctl}
BASE=${BASE:-http://127.0.0.1:15672}
ADMIN=${ADMIN:-guest:guest}
OUT=${1:-/work/oracle/rabbitmq-3.10.8-definitions.json}

if [ "${RESET:-1}" = 1 ]; then
  $CTL stop_app >/dev/null && $CTL reset >/dev/null && $CTL start_app >/dev/null
fi

$CTL add_user admin1 admin1-pass >/dev/null
$CTL set_user_tags admin1 administrator >/dev/null
$CTL add_user mon1 mon1-pass >/dev/null
$CTL set_user_tags mon1 monitoring policymaker >/dev/null
$CTL add_user free1 free1-pass >/dev/null
$CTL set_user_tags free1 my-custom-tag >/dev/null
$CTL add_user nopw1 temp-pass >/dev/null
$CTL clear_password nopw1 >/dev/null

$CTL add_vhost v1 >/dev/null
$CTL add_vhost v2 --description "second vhost for the fixture" --tags "team-a,blue" --default-queue-type quorum >/dev/null

for vh in / v1 v2; do
  $CTL set_permissions -p "$vh" guest '.*' '.*' '.*' >/dev/null
  $CTL set_permissions -p "$vh" admin1 '.*' '.*' '.*' >/dev/null
done
$CTL set_permissions -p v1 mon1 '^mon-.*' '.*' '.*' >/dev/null
$CTL set_permissions -p v2 free1 '' '^free\.' '.*' >/dev/null
$CTL set_permissions -p v1 nopw1 '.*' '.*' '.*' >/dev/null
$CTL set_topic_permissions -p v1 mon1 amq.topic '^mon\.' '^mon\.' >/dev/null
$CTL set_topic_permissions -p v2 free1 x.topic '^{username}\.' '.*' >/dev/null

$CTL set_user_limits free1 '{"max-connections": 5, "max-channels": 10}' >/dev/null
$CTL set_user_limits mon1 '{"max-channels": 20}' >/dev/null
$CTL set_vhost_limits -p v1 '{"max-connections": 100, "max-queues": 50}' >/dev/null
$CTL set_vhost_limits -p v2 '{"max-queues": 10}' >/dev/null

$CTL set_policy -p v1 --priority 1 --apply-to queues ttl-policy '^ttl\.' '{"message-ttl": 60000, "max-length": 500}' >/dev/null
$CTL set_policy -p v2 --priority 0 --apply-to exchanges ae-policy '^pol\.' '{"alternate-exchange": "ae"}' >/dev/null
$CTL set_operator_policy -p v2 --priority 0 --apply-to queues op-limit '.*' '{"max-length": 10000}' >/dev/null
$CTL set_global_parameter oracle-note '{"purpose": "warren fixture", "n": 1}' >/dev/null
$CTL set_cluster_name rabbit@oracle >/dev/null

enc() { [ "$1" = / ] && echo %2F || echo "$1"; }
put() { # put PATH JSON
  local code
  code=$(curl -s -o /tmp/fixture_resp -w '%{http_code}' -u "$ADMIN" -X PUT -H 'content-type: application/json' --data-binary "$2" "$BASE$1")
  case $code in 2*) ;; *) echo "PUT $1 -> $code $(cat /tmp/fixture_resp)" >&2; exit 1;; esac
}
post() {
  local code
  code=$(curl -s -o /tmp/fixture_resp -w '%{http_code}' -u "$ADMIN" -X POST -H 'content-type: application/json' --data-binary "$2" "$BASE$1")
  case $code in 2*) ;; *) echo "POST $1 -> $code $(cat /tmp/fixture_resp)" >&2; exit 1;; esac
}

for vh in v1 v2; do
  V=$(enc $vh)
  put /api/exchanges/$V/ae '{"type":"fanout","durable":true}'
  put /api/exchanges/$V/dlx '{"type":"direct","durable":true}'
  put /api/exchanges/$V/x.direct '{"type":"direct","durable":true,"arguments":{"alternate-exchange":"ae"}}'
  put /api/exchanges/$V/x.fanout '{"type":"fanout","durable":true,"auto_delete":false}'
  put /api/exchanges/$V/x.topic '{"type":"topic","durable":true}'
  put /api/exchanges/$V/x.headers '{"type":"headers","durable":true,"internal":false,"arguments":{"alternate-exchange":"ae"}}'
  put /api/exchanges/$V/x.internal '{"type":"topic","durable":true,"internal":true}'
  put /api/queues/$V/q.classic '{"durable":true,"arguments":{"x-queue-type":"classic","x-max-length":1000,"x-message-ttl":60000,"x-dead-letter-exchange":"dlx","x-dead-letter-routing-key":"dead"}}'
  put /api/queues/$V/q.quorum '{"durable":true,"arguments":{"x-queue-type":"quorum","x-dead-letter-exchange":"dlx","x-max-length":2000}}'
  put /api/queues/$V/q.plain '{"durable":true}'
  put /api/queues/$V/q.dead '{"durable":true,"arguments":{"x-queue-type":"classic"}}'
  put /api/queues/$V/ttl.q '{"durable":true,"auto_delete":false,"arguments":{"x-queue-type":"classic","x-expires":3600000}}'
  post /api/bindings/$V/e/x.direct/q/q.classic '{"routing_key":"k1","arguments":{}}'
  post /api/bindings/$V/e/x.direct/q/q.quorum '{"routing_key":"k2","arguments":{"x-custom":"yes","n":2}}'
  post /api/bindings/$V/e/x.headers/q/q.plain '{"routing_key":"","arguments":{"x-match":"all","h1":"v1","h2":2}}'
  post /api/bindings/$V/e/x.topic/e/x.fanout '{"routing_key":"a.#","arguments":{}}'
  post /api/bindings/$V/e/x.topic/e/x.direct '{"routing_key":"*.k1","arguments":{"x-e2e":true}}'
  post /api/bindings/$V/e/x.fanout/q/q.quorum '{"routing_key":"","arguments":{}}'
  post /api/bindings/$V/e/ae/q/q.plain '{"routing_key":"","arguments":{}}'
  post /api/bindings/$V/e/dlx/q/q.dead '{"routing_key":"dead","arguments":{}}'
done
# one queue/exchange in the default vhost too
put /api/exchanges/%2F/root.x '{"type":"direct","durable":true}'
put /api/queues/%2F/root.q '{"durable":true,"arguments":{"x-queue-type":"classic"}}'
post /api/bindings/%2F/e/root.x/q/root.q '{"routing_key":"r","arguments":{}}'

$CTL export_definitions - --format json > "$OUT"
echo "exported to $OUT"
