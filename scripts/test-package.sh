#!/usr/bin/env bash
# The Debian package, end to end on this (Debian) machine, as root:
#   1. builds it (`cargo deb`; installs cargo-deb from crates.io if missing);
#   2. installs it with `dpkg -i`: the warren system user, /etc/warren/warren.toml,
#      /var/lib/warren, the systemd unit (checked with `systemd-analyze verify`
#      where systemd is installed);
#   3. starts the broker as the packaged user with the packaged config (by
#      hand: this machine's systemd is not running as PID 1; the unit's
#      ExecStart line under setpriv, with free ports given as flags), waits for it, runs
#      the pika "Hello World" tutorial against it, and stops it with SIGTERM
#      (exit 0);
#   4. removes it with `dpkg --purge` and checks what is left.
# Not part of scripts/test (it needs root and a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "test-package: needs root (dpkg -i)" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "build"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release -q -p warren -p warren-loadgen
DEB=$(cargo deb -p warren --no-build -q 2>/dev/null || cargo deb -p warren --no-build)
DEB=$(ls -t target/debian/warren_*.deb | head -1)
dpkg-deb --info "$DEB" | sed -n '1,30p'
dpkg-deb --contents "$DEB"

step "install"
dpkg -i "$DEB"
trap 'dpkg --purge warren >/dev/null 2>&1 || true' EXIT
id warren
test -x /usr/bin/warren && test -x /usr/bin/warrenctl && test -x /usr/bin/warren-loadgen
test -f /etc/warren/warren.toml
test "$(stat -c %U /var/lib/warren)" = warren
dpkg-query -W -f='${Conffiles}\n' warren | grep -q /etc/warren/warren.toml
UNIT=$(dpkg -L warren | grep '/warren.service$')
echo "unit: $UNIT"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$UNIT"
fi
/usr/bin/warren --config /etc/warren/warren.toml --check-config | tee /tmp/warren-check.txt
grep -q 'data_dir = "/var/lib/warren"  # file' /tmp/warren-check.txt

step "run as the warren user with the packaged config"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); HTTP=$(free_port); PROM=$(free_port)
ExecStart=$(sed -n 's/^ExecStart=//p' "$UNIT")
setpriv --reuid=warren --regid=warren --init-groups -- $ExecStart --port "$PORT" --http-port "$HTTP" --prometheus-port "$PROM" \
    > /tmp/warren-package.log 2>&1 &
PID=$!
for _ in $(seq 1 200); do
    (echo > /dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.05
done
ps -o user=,cmd= -p "$PID"
test "$(ps -o user= -p "$PID" | tr -d ' ')" = warren
PY=$(scripts/pyenv.sh)
"$PY" tests/pika/tutorial1_hello.py --pub-port "$PORT" --sub-port "$PORT"
test -f /var/lib/warren/definitions.log
test "$(stat -c %U /var/lib/warren/definitions.log)" = warren
kill -TERM "$PID"
wait "$PID"
echo "warren exited $? after SIGTERM"
tail -3 /tmp/warren-package.log

step "purge"
dpkg --purge warren
trap - EXIT
! test -e /usr/bin/warren
! test -e /etc/warren/warren.toml
! test -e /var/lib/warren
echo
echo "test-package: ok ($DEB)"
