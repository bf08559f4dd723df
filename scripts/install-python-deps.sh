#!/bin/sh
# Installs what the Python client venv (target/pyenv: pika, python-qpid-proton,
# see tests/common_python) needs to be made on a fresh Debian machine:
# python3-venv, and python3-dev plus gcc because python-qpid-proton is built
# from source. Only when something is missing and we are root with apt-get.
# Never fails: without them the venv setup fails and says why.
has_headers() {
    python3 - <<'PY' 2>/dev/null
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
}
if python3 -c 'import venv, ensurepip' 2>/dev/null && has_headers && command -v cc >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-python-deps: python3-venv/python3-dev/gcc missing and not root with apt-get" >&2
    exit 0
fi
echo "install-python-deps: installing python3-venv python3-dev gcc" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q python3-venv python3-dev gcc >/tmp/install-python-deps.log 2>&1; then
    apt-get update -q >>/tmp/install-python-deps.log 2>&1 &&
        apt-get install -y -q python3-venv python3-dev gcc >>/tmp/install-python-deps.log 2>&1 ||
        echo "install-python-deps: failed (see /tmp/install-python-deps.log)" >&2
fi
exit 0
