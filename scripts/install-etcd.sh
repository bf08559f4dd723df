#!/bin/sh
# Installs etcd (Debian's etcd-server) for the cluster tests (tests/etcd_client.rs
# and, later, tests/cluster_*.rs) when it is missing and this is a Debian machine
# where we are root. Otherwise those tests say so and skip.
command -v etcd >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2; } \
        || echo "install-etcd: could not install etcd-server" >&2
    # The package starts a system etcd on 2379 where systemd runs; the tests
    # start their own on free ports and do not need it.
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now etcd >/dev/null 2>&1 || true
else
    echo "install-etcd: etcd missing and cannot install it here (not root or no apt)" >&2
fi
exit 0
