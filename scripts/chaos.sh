#!/usr/bin/env bash
# Jepsen-style chaos run of a three-node warren cluster with one etcd (not part
# of CI): confirming publishers and a consumer on the quorum queue `chaos`
# while nodes are killed, paused and restarted; then a checker (lost confirmed
# messages, duplicates without the redelivered flag, two leaders in one epoch).
# Everything lands in target/chaos/<timestamp>/ (result.json, logs).
#   scripts/chaos.sh [--duration 1200] [--keep] [--seed N]
# BUILD=1 runs `cargo build --release` first; otherwise the existing
# target/release/warren is used. Details: scripts/chaos.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BUILD:-}" ]; then
    cargo build --release
fi
PY=$(scripts/pyenv.sh)
exec "$PY" scripts/chaos.py "$@"
