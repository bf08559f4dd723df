#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each
# (default 60) with libFuzzer on nightly, and prints the executions per
# target and the grand total. Installs cargo-fuzz if it is missing. The
# seed corpus is written fresh from `warren::fuzz::seeds` (the stable
# fuzz_smoke test binary) into fuzz/seeds/<target>; what libFuzzer learns
# is kept in fuzz/corpus/<target> between runs. Crashes land in
# fuzz/artifacts/<target>/: copy each into fuzz/regressions/<target>/ once
# fixed, so that tests/fuzz_smoke.rs replays it.
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
#   JOBS=n   libFuzzer -fork=n (default: 1 process)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=($(ls fuzz/fuzz_targets | sed 's/\.rs$//'))
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
WARREN_FUZZ_WRITE_SEEDS="$PWD/fuzz/seeds" \
    cargo test -q --test fuzz_smoke write_seeds -- --ignored >/dev/null
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
total=0
summary=""
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    extra=()
    [ -n "${JOBS:-}" ] && extra+=("-fork=$JOBS")
    echo "== $t: ${SECS}s" >&2
    status=0
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "${extra[@]}" \
        >"$LOGS/$t.log" 2>&1 || status=$?
    # Executions: libFuzzer's final stats, else the last "#N" status line.
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
    [ -n "$n" ] || n=$(grep -o '^#[0-9]*' "$LOGS/$t.log" | tr -d '#' | tail -1 || true)
    n=${n:-0}
    total=$((total + n))
    if [ "$status" -ne 0 ]; then
        tail -40 "$LOGS/$t.log" >&2
        summary+=$(printf '%-16s %14s execs  FAILED (exit %s, see fuzz/artifacts/%s)' "$t" "$n" "$status" "$t")$'\n'
    else
        summary+=$(printf '%-16s %14s execs' "$t" "$n")$'\n'
    fi
done
printf '%s' "$summary"
printf '%-16s %14s execs in %ss per target\n' "total" "$total" "$SECS"
! grep -q FAILED <<<"$summary"
