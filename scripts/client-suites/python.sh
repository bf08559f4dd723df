#!/usr/bin/env bash
# Runs Python AMQP client libraries' own integration test suites against
# warren (or any broker), to find where warren differs from RabbitMQ.
#
# Usage: scripts/client-suites/python.sh [--port P] [SUITE...]
#
# Suites (default: all): pika amqp kombu amqpstorm aiormq aio-pika
#   pika      pika's tests/acceptance (blocking, async adapters, io services);
#             the sdist has no tests, so they come from git (PIKA_REF, default
#             tag 1.3.2, from PIKA_GIT) unless PIKA_SRC names a checkout
#   amqp      py-amqp's t/integration
#   kombu     kombu's t/integration/test_py_amqp.py (py-amqp transport)
#   amqpstorm amqpstorm's functional tests (cleanup over AMQP instead of the
#             management API)
#   aiormq    aiormq's tests (their docker fixture replaced by AMQP_URL)
#   aio-pika  aio-pika's tests (same)
# The others are sdists from PyPI (versions below, overridable by env).
#
# Without --port, builds warren (debug) and starts it on a free port with
# --shards 2 and a temporary data dir; with --port P the suites run against
# the broker already listening on 127.0.0.1:P (e.g. 5672, a RabbitMQ, to tell
# warren bugs from suite quirks). Needs python3 with venv and PyPI access.
# Everything goes under target/client-suites/python (logs in logs/warren/ or
# logs/port-P/).
#
# Left out, as they need what warren does not have or this machine may lack:
# TLS (amqps, port 5671), the management API, docker (broker restarts in
# aio-pika's test_robust_recovery), DNS for www.google.com (pika's
# getaddrinfo test), nose (twisted_adapter_tests of pika 1.3.2).

set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/target/client-suites/python
PIKA_REF=${PIKA_REF:-1.3.2}
PIKA_GIT=${PIKA_GIT:-https://github.com/pika/pika.git}
PIKA_SRC=${PIKA_SRC:-}
AMQP_VERSION=${AMQP_VERSION:-5.4.2}
KOMBU_VERSION=${KOMBU_VERSION:-5.7.0}
AMQPSTORM_VERSION=${AMQPSTORM_VERSION:-3.1.4}
AIORMQ_VERSION=${AIORMQ_VERSION:-7.2.4}
AIO_PIKA_VERSION=${AIO_PIKA_VERSION:-10.2.1}
TIMEOUT=${TIMEOUT:-60}
ALL_SUITES="pika amqp kombu amqpstorm aiormq aio-pika"

PORT=
SUITES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --port) PORT=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "python.sh: unknown option $1" >&2; exit 2 ;;
        *) SUITES+=("$1"); shift ;;
    esac
done
[ ${#SUITES[@]} -eq 0 ] && read -r -a SUITES <<<"$ALL_SUITES"

LOGS=$WORK/logs/${PORT:+port-$PORT}
[ -z "$PORT" ] && LOGS=$WORK/logs/warren
mkdir -p "$WORK/src" "$LOGS"
log() { echo "== $*" >&2; }
pip_q() { "$@" -q --disable-pip-version-check; }

# ---- venvs: one for pika/py-amqp/kombu, one for the asyncio clients (pytest
# plugins differ)
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv" || exit 2
fi
pip_q "$WORK/venv/bin/pip" install pytest pytest-timeout tornado twisted gevent \
    "amqp==$AMQP_VERSION" "kombu==$KOMBU_VERSION" "amqpstorm==$AMQPSTORM_VERSION" \
    requests || exit 2
if [ ! -x "$WORK/aio-venv/bin/python" ]; then
    python3 -m venv "$WORK/aio-venv" || exit 2
fi
pip_q "$WORK/aio-venv/bin/pip" install "pytest>=8.4,<9" pytest-timeout \
    "aiomisc-pytest>=2,<3" aiomisc shortuuid timeout-decorator \
    "aiormq==$AIORMQ_VERSION" "aio-pika==$AIO_PIKA_VERSION" || exit 2

# ---- sources
sdist() { # name version dir
    local name=$1 version=$2 dir=$WORK/src/$3
    [ -d "$dir" ] && return 0
    local dl=$WORK/src/dl
    mkdir -p "$dl"
    pip_q "$WORK/venv/bin/pip" download --no-deps --no-binary "$name" -d "$dl" \
        "$name==$version" || return 1
    mkdir -p "$dir"
    tar -xzf "$dl"/"$(echo "$name" | tr - _)"-"$version".tar.gz -C "$dir" --strip-components 1
}
pika_src() {
    local dir=$WORK/src/pika-$PIKA_REF
    [ -d "$dir" ] && return 0
    if [ -n "$PIKA_SRC" ]; then
        cp -r "$PIKA_SRC" "$dir"
    else
        git clone -q --depth 1 --branch "$PIKA_REF" "$PIKA_GIT" "$dir" || return 1
    fi
}

# ---- the broker
BROKER_PID=
DATA_DIR=
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    [ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
}
trap cleanup EXIT
if [ -z "$PORT" ]; then
    cargo build -q --bin warren || exit 2
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    DATA_DIR=$(mktemp -d)
    ./target/debug/warren --port "$PORT" --http-port 0 --prometheus-port 0 --data-dir "$DATA_DIR" --shards 2 \
        >"$LOGS/warren.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
        sleep 0.1
    done
    log "warren on port $PORT (log: $LOGS/warren.log)"
else
    log "broker on port $PORT"
fi
URL=amqp://guest:guest@127.0.0.1:$PORT/

# ---- suites: each in a fresh copy of its source, pointed at $PORT
RESULTS=()
run() { # suite dir python pytest-args...
    local suite=$1 dir=$2 py=$3
    shift 3
    local out=$LOGS/$suite.log
    log "$suite: (cd $dir && $py -m pytest $*)"
    (cd "$dir" && timeout 1800 "$py" -m pytest -p no:cacheprovider -q -rfE \
        --timeout "$TIMEOUT" "$@") >"$out" 2>&1
    local summary
    summary=$(grep -E '^=*.*[0-9]+ (passed|failed|error)' "$out" | tail -1 |
        sed 's/^=* *//; s/ *=*$//')
    RESULTS+=("$suite: ${summary:-no result, see $out}")
    grep -E '^(FAILED|ERROR) [^ ]' "$out" | sed "s/^/    $suite /" >&2
}
fresh() { # source-dir copy-name
    local dir=$WORK/run/$2
    rm -rf "$dir"
    mkdir -p "$WORK/run"
    cp -r "$1" "$dir"
    echo "$dir"
}
# aiormq/aio-pika start a docker RabbitMQ in a fixture: use $AMQP_URL instead.
docker_override() {
    cat >>"$1/tests/conftest.py" <<'PY'

# --- appended by warren's scripts/client-suites/python.sh: the broker at
# $AMQP_URL instead of a docker container
import os as _os
import types as _types

from yarl import URL as _URL


def pytest_configure(config):
    pass


@pytest.fixture(scope="session")
def rabbitmq_container():
    url = _URL(_os.environ["AMQP_URL"])
    return _types.SimpleNamespace(
        id="external", host=url.host,
        ports={"5672/tcp": url.port, "5671/tcp": 5671,
               "15672/tcp": 15672, "15671/tcp": 15671},
    )


@pytest.fixture(scope="session")
def amqp_direct_url(rabbitmq_container):
    return _URL.build(
        scheme="amqp", user="guest", password="guest", path="//",
        host=rabbitmq_container.host,
        port=rabbitmq_container.ports["5672/tcp"],
    )
PY
}

for suite in "${SUITES[@]}"; do
    case "$suite" in
        pika)
            pika_src || { RESULTS+=("pika: no source (set PIKA_SRC)"); continue; }
            d=$(fresh "$WORK/src/pika-$PIKA_REF" pika)
            sed -i "s/5672/$PORT/g" "$d"/tests/acceptance/*.py "$d"/tests/base/async_test_base.py
            files=()
            for f in blocking_adapter_test async_adapter_tests io_services_tests \
                enforce_one_basicget_test thread_safe_connection_test \
                thread_safe_bounded_queue_test; do
                [ -f "$d/tests/acceptance/$f.py" ] && files+=("tests/acceptance/$f.py")
            done
            # Older releases' twisted tests need nose, which Python 3.10+ lacks.
            t=tests/acceptance/twisted_adapter_tests.py
            grep -q nose "$d/$t" || files+=("$t")
            run pika "$d" "$WORK/venv/bin/python" "${files[@]}" \
                -k "not TestGetaddrinfoWWWGoogleDotComPort80"
            ;;
        amqp)
            sdist amqp "$AMQP_VERSION" "amqp-$AMQP_VERSION" || { RESULTS+=("amqp: download failed"); continue; }
            d=$(fresh "$WORK/src/amqp-$AMQP_VERSION" amqp)
            RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP=$PORT \
                run amqp "$d" "$WORK/venv/bin/python" t/integration -k "not tls"
            ;;
        kombu)
            sdist kombu "$KOMBU_VERSION" "kombu-$KOMBU_VERSION" || { RESULTS+=("kombu: download failed"); continue; }
            d=$(fresh "$WORK/src/kombu-$KOMBU_VERSION" kombu)
            RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP=$PORT \
                run kombu "$d" "$WORK/venv/bin/python" t/integration/test_py_amqp.py
            ;;
        amqpstorm)
            sdist amqpstorm "$AMQPSTORM_VERSION" "amqpstorm-$AMQPSTORM_VERSION" || { RESULTS+=("amqpstorm: download failed"); continue; }
            d=$(fresh "$WORK/src/amqpstorm-$AMQPSTORM_VERSION" amqpstorm)
            # Its tests connect to port 5672 and clean up through the
            # management API: point them at $PORT, clean up over AMQP.
            "$WORK/venv/bin/python" - "$d/amqpstorm/tests/functional/utility.py" "$PORT" <<'PY' || continue
import sys
path, port = sys.argv[1], sys.argv[2]
s = open(path).read()
s = s.replace("return Connection(HOST, USERNAME, PASSWORD, **kwargs)",
              "return Connection(HOST, USERNAME, PASSWORD, port=%s, **kwargs)" % port)
old = ("    api = ManagementApi(HTTP_URL, USERNAME, PASSWORD, timeout=10)\n"
       "    if queue:\n        _delete_queues(api, names)\n"
       "    if exchange:\n        _delete_exchanges(api, names)\n")
assert old in s, "amqpstorm's clean() changed"
s = s.replace(old, (
    "    with Connection(HOST, USERNAME, PASSWORD, port=%s, timeout=10) as c:\n"
    "        with c.channel() as ch:\n"
    "            for name in names:\n"
    "                if queue:\n"
    "                    ch.queue.delete(name)\n"
    "                if exchange:\n"
    "                    ch.exchange.delete(name)\n") % port)
open(path, "w").write(s)
PY
            AMQP_HOST=127.0.0.1 AMQP_USERNAME=guest AMQP_PASSWORD=guest AMQP_URI="$URL%2F" \
                run amqpstorm "$d" "$WORK/venv/bin/python" amqpstorm/tests/functional \
                --ignore amqpstorm/tests/functional/management \
                --ignore amqpstorm/tests/functional/ssl \
                --ignore amqpstorm/tests/functional/test_web_based.py
            ;;
        aiormq)
            sdist aiormq "$AIORMQ_VERSION" "aiormq-$AIORMQ_VERSION" || { RESULTS+=("aiormq: download failed"); continue; }
            d=$(fresh "$WORK/src/aiormq-$AIORMQ_VERSION" aiormq)
            docker_override "$d"
            AMQP_URL=$URL run aiormq "$d" "$WORK/aio-venv/bin/python" tests \
                -k "not amqps and not ssl"
            ;;
        aio-pika)
            sdist aio-pika "$AIO_PIKA_VERSION" "aio-pika-$AIO_PIKA_VERSION" || { RESULTS+=("aio-pika: download failed"); continue; }
            d=$(fresh "$WORK/src/aio-pika-$AIO_PIKA_VERSION" aio-pika)
            docker_override "$d"
            AMQP_URL=$URL run aio-pika "$d" "$WORK/aio-venv/bin/python" tests \
                -k "not amqps" --ignore tests/test_robust_recovery.py
            ;;
        *) RESULTS+=("$suite: unknown suite (one of: $ALL_SUITES)") ;;
    esac
done

echo
echo "Summary (broker port $PORT; logs in $LOGS):"
for r in "${RESULTS[@]}"; do
    echo "  $r"
done
