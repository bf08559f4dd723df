#!/bin/bash
# Section 6: management HTTP API shapes.  Prints a compact transcript:
#   > METHOD PATH [body]
#   < STATUS  content-type
#   <json body, compacted, long lists trimmed to 3 elements>
# Usage: BASE=http://127.0.0.1:15672 ADMIN=guest:guest bash http_api.sh
BASE=${BASE:-http://127.0.0.1:15672}
ADMIN=${ADMIN:-guest:guest}

req() {  # req METHOD PATH [BODY] [CREDS]
  local m=$1 p=$2 b=$3 creds=${4:-$ADMIN}
  echo "> $m $p${b:+ $b}${4:+   (as ${4%%:*})}"
  local out hdr
  hdr=$(mktemp)
  if [ -n "$b" ]; then
    out=$(curl -s -D "$hdr" -u "$creds" -X "$m" -H 'content-type: application/json' --data-binary "$b" "$BASE$p")
  else
    out=$(curl -s -D "$hdr" -u "$creds" -X "$m" "$BASE$p")
  fi
  local status ctype
  status=$(head -1 "$hdr" | tr -d '\r')
  ctype=$(grep -i '^content-type:' "$hdr" | tr -d '\r' | cut -d' ' -f2-)
  echo "< $status  ${ctype}"
  grep -i '^www-authenticate:\|^location:' "$hdr" | tr -d '\r' | sed 's/^/< /' 
  if [ -n "$out" ]; then
    if echo "$out" | jq -e . >/dev/null 2>&1; then
      echo "$out" | jq -c 'if type=="array" and length>3 then .[0:3]+["...(\(length) total)"] else . end'
    else
      echo "$out" | head -c 600; echo
    fi
  fi
  rm -f "$hdr"
}

# clean slate for the objects used here
for u in hu1 hu2 hu3; do curl -s -o /dev/null -u "$ADMIN" -X DELETE "$BASE/api/users/$u"; done
curl -s -o /dev/null -u "$ADMIN" -X DELETE "$BASE/api/vhosts/hv"

req GET /api/whoami
req GET /api/overview '' >/dev/null
req PUT /api/users/hu1 '{"password":"hu1pass","tags":"monitoring,policymaker"}'
req PUT /api/users/hu1 '{"password":"hu1pass","tags":"monitoring,policymaker"}'
req PUT /api/users/hu2 '{"password":"hu2pass","tags":["management","custom-tag"]}'
req PUT /api/users/hu3 '{"password_hash":"","tags":""}'
req PUT /api/users/hu4 '{"tags":"x"}'
req PUT /api/users/hu4 '{"password":"p"}'
req GET /api/users/hu1
req GET /api/users/hu2
req GET /api/users/hu3
req GET /api/users/hu4
req GET /api/users
req GET /api/users/without-permissions
req GET /api/users/nosuch
req DELETE /api/users/hu4
req DELETE /api/users/hu4
req PUT /api/vhosts/hv '{"description":"http vhost","tags":"a,b","default_queue_type":"classic"}'
req GET /api/vhosts/hv
req PUT /api/vhosts/hv '{"description":"changed"}'
req GET /api/vhosts/hv
req GET /api/vhosts
req GET /api/vhosts/nosuch
req PUT /api/permissions/hv/hu1 '{"configure":".*","write":".*","read":".*"}'
req PUT /api/permissions/hv/hu1 '{"configure":"^a","write":"^b","read":"^c"}'
req PUT /api/permissions/hv/hu1 '{"configure":"("}'
req PUT /api/permissions/hv/hu1 '{"configure":"(","write":".*","read":".*"}'
req PUT /api/permissions/hv/nosuch '{"configure":".*","write":".*","read":".*"}'
req PUT /api/permissions/nosuch/hu1 '{"configure":".*","write":".*","read":".*"}'
req GET /api/permissions/hv/hu1
req GET /api/permissions
req GET /api/vhosts/hv/permissions
req GET /api/users/hu1/permissions
req GET /api/permissions/hv/hu2
req DELETE /api/permissions/hv/hu2
req PUT /api/topic-permissions/hv/hu1 '{"exchange":"amq.topic","write":"^a","read":"^b"}'
req PUT /api/topic-permissions/hv/hu1 '{"exchange":"amq.topic","write":"^a2","read":"^b2"}'
req PUT /api/topic-permissions/hv/hu1 '{"write":"^a","read":"^b"}'
req GET /api/topic-permissions
req GET /api/topic-permissions/hv/hu1
req GET /api/vhosts/hv/topic-permissions
req GET /api/users/hu1/topic-permissions
req PUT /api/vhost-limits/hv/max-connections '{"value":1}'
req PUT /api/vhost-limits/hv/max-queues '{"value":10}'
req PUT /api/vhost-limits/hv/max-bogus '{"value":10}'
req PUT /api/vhost-limits/hv/max-queues '{"value":"x"}'
req GET /api/vhost-limits
req GET /api/vhost-limits/hv
req DELETE /api/vhost-limits/hv/max-queues
req DELETE /api/vhost-limits/hv/max-queues
req PUT /api/user-limits/hu1/max-channels '{"value":5}'
req PUT /api/user-limits/hu1/max-connections '{"value":2}'
req GET /api/user-limits
req GET /api/user-limits/hu1
req DELETE /api/user-limits/hu1/max-channels
req GET /api/definitions
req GET /api/definitions/hv
req POST /api/definitions '{"users":[{"name":"hu5","password_hash":"","hashing_algorithm":"rabbit_password_hashing_sha256","tags":""}],"vhosts":[{"name":"hv2"}],"permissions":[{"user":"hu5","vhost":"hv2","configure":".*","write":".*","read":".*"}]}'
req GET /api/users/hu5
req POST /api/definitions '{"users":[{"name":"hu6"}]}'
req POST /api/definitions 'not json'
req DELETE /api/users/hu5
req DELETE /api/vhosts/hv2
# errors
req GET /api/nosuchthing
req PUT /api/users/hu1 'not json'
req PUT /api/users/hu1 '{"password":'
req GET /api/users '' guest:wrong
req GET /api/users '' nosuch:x
echo "> GET /api/users  (no credentials)"; curl -s -i "$BASE/api/users" | tr -d '\r' | grep -iv '^date\|^server\|^vary\|^content-length\|^content-security\|^$'; echo
req GET /api/users '' hu2:hu2pass
req GET /api/whoami '' hu1:hu1pass
req GET /api/users '' hu1:hu1pass
req PUT /api/users/hu1 '{"password":"hu1pass","tags":"monitoring,policymaker"}' hu1:hu1pass
req DELETE /api/vhosts/hv
req DELETE /api/vhosts/hv
req DELETE /api/users/hu1
req DELETE /api/users/hu2
req DELETE /api/users/hu3
# guest over a non-loopback address (loopback_users applies to HTTP too)
if [ -n "$NONLOOPBACK_BASE" ]; then
  BASE=$NONLOOPBACK_BASE req GET /api/whoami
fi
