#!/usr/bin/env bash
# Soak test (issue 14, part 5; not part of CI): `scripts/soak.sh [minutes]`
# (default 30). Mixed confirm/persistent/transient/TTL/DLX traffic on ~100
# queues while a chaos loop kills clients, restarts the broker (SIGTERM and
# SIGKILL) and fills the data dir's tmpfs; then a drain and the invariant
# checks. Everything lands in target/soak/<timestamp>/ (report.txt there).
# Exits non-zero when an invariant fails. See docs/soak.md.
# Environment: SOAK_QUEUES (100), SOAK_PUB_RATES (100,100,50,50 msg/s),
# SOAK_CHAOS_INTERVAL (20:60 s; 10:30 for runs under 10 minutes),
# SOAK_TMPFS_SIZE (256m), SOAK_NO_BUILD=1 (skip cargo build).
set -euo pipefail
MINUTES=${1:-30}
cd "$(dirname "$0")/.."
ROOT=$PWD
case "$MINUTES" in
    ''|*[!0-9.]*) echo "usage: scripts/soak.sh [minutes]" >&2; exit 2 ;;
esac
if [ -z "${SOAK_CHAOS_INTERVAL:-}" ]; then
    if awk "BEGIN{exit !($MINUTES < 10)}"; then SOAK_CHAOS_INTERVAL=10:30; else SOAK_CHAOS_INTERVAL=20:60; fi
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${SOAK_NO_BUILD:-}" ]; then
    cargo build --release --bin warren
fi
PY=$(scripts/pyenv.sh)
WORK=$CARGO_TARGET_DIR/soak/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK/tmpfs"
echo "soak: work dir $WORK"

MOUNTED=0
DRIVER=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM -- "-$DRIVER" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$DRIVER" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$DRIVER" 2>/dev/null || true
    fi
    if [ "$MOUNTED" = 1 ]; then
        umount "$WORK/tmpfs" 2>/dev/null || umount -l "$WORK/tmpfs" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FILL_ARGS=()
if mount -t tmpfs -o "size=${SOAK_TMPFS_SIZE:-256m}" soak-tmpfs "$WORK/tmpfs" 2>"$WORK/mount.err"; then
    MOUNTED=1
else
    REASON="cannot mount a tmpfs: $(tr '\n' ' ' <"$WORK/mount.err")"
    echo "soak: $REASON; data dir is a plain directory, disk-fill chaos skipped"
    FILL_ARGS=(--no-disk-fill "$REASON")
fi

# The driver leads its own process group: the broker and every client are in
# it, so cleanup can end them all by that one id.
setsid "$PY" scripts/soak/soak.py run --minutes "$MINUTES" --workdir "$WORK" \
    --data "$WORK/tmpfs/data" --broker "$CARGO_TARGET_DIR/release/warren" \
    --queues "${SOAK_QUEUES:-100}" --pub-rates "${SOAK_PUB_RATES:-100,100,50,50}" \
    --chaos-interval "$SOAK_CHAOS_INTERVAL" "${FILL_ARGS[@]}" &
DRIVER=$!
RC=0
wait "$DRIVER" || RC=$?
DRIVER=
echo "soak: exit $RC; logs and report in $WORK"
exit "$RC"
