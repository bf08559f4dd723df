#!/bin/bash
# Re-run every oracle script against a broker.  HOST/PORT/NONLOOPBACK select the
# broker; CTL is the rabbitmqctl-compatible admin CLI used for setup.
#   HOST=127.0.0.1 PORT=5672 NONLOOPBACK=192.0.2.2 bash run_all.sh out-dir
set -e
HOST=${HOST:-127.0.0.1}; PORT=${PORT:-5672}; NONLOOPBACK=${NONLOOPBACK:-192.0.2.2}
CTL=${CTL:-rabbitmqctl}; PY=${PY:-$(dirname "$0")/../venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-out}; mkdir -p "$OUT"
cd "$(dirname "$0")"
C="--host $HOST --port $PORT --ctl $CTL"
$CTL add_vhost v >/dev/null 2>&1 || true
$CTL add_user u upass >/dev/null 2>&1 || true
$CTL set_permissions -p v guest '.*' '.*' '.*' >/dev/null
$CTL set_permissions -p v u '.*' '.*' '.*' >/dev/null
$PY perms.py $C --vhost v --user u --password upass > "$OUT/perms.out" 2>&1
$PY topic_perms.py $C --vhost v --user u --password upass > "$OUT/topic.out" 2>&1
$PY conn_level.py $C --nonloopback $NONLOOPBACK --vhost v --user u --password upass > "$OUT/conn.out" 2>&1
$PY limits.py $C --vhost vlim --user u --password upass > "$OUT/limits.out" 2>&1
$PY limits_channels_total.py $C --vhost vlim --user u --password upass >> "$OUT/limits.out" 2>&1
$PY raw_close_ids.py $C --vhost v --user u --password upass > "$OUT/raw_close_ids.out" 2>&1
$PY lifecycle.py $C --vhost vdel --user udel --password udelpass > "$OUT/lifecycle.out" 2>&1
BASE=http://$HOST:15672 NONLOOPBACK_BASE=http://$NONLOOPBACK:15672 bash http_api.sh > "$OUT/http.out" 2>&1
echo "outputs in $OUT"
