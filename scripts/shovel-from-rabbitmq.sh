#!/usr/bin/env bash
# Drains a queue of a running RabbitMQ into warren with a warren shovel and
# checks the counts; times it next to RabbitMQ's own shovel (issue 19). Not
# part of scripts/test: it needs a RabbitMQ with rabbitmq_management and
# rabbitmq_shovel(_management) enabled on 5672/15672 (Debian:
# `apt-get install rabbitmq-server; rabbitmq-plugins enable
# rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management`).
#
# Environment: MESSAGES (1000000), SIZE (100), WARREN_PORT (5690),
# WARREN_HTTP_PORT (15690), RABBIT_HOST/RABBIT_PORT/RABBIT_HTTP_PORT,
# NO_BUILD=1. Details: scripts/shovel_from_rabbitmq.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -q -p warren -p warren-loadgen
fi
PY=$(scripts/pyenv.sh)
export BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
exec "$PY" scripts/shovel_from_rabbitmq.py
