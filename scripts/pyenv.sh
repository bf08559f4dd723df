#!/bin/sh
# Makes the Python venv used by the pika tutorial tests (tests/pika/, run by
# tests/pika_tutorials.rs, which does the same on first use) and prints the path
# of its python. Run a tutorial script by hand with it, e.g.:
#   "$(scripts/pyenv.sh)" tests/pika/tutorial1_hello.py --pub-port 5672 --sub-port 5672
set -eu
cd "$(dirname "$0")/.."
if ! target/pyenv/bin/python -c 'import pika, proton, rabbitmq_amqp_python_client' >/dev/null 2>&1; then
    python3 -m venv target/pyenv >&2
    target/pyenv/bin/pip install -q --disable-pip-version-check -r tests/pika/requirements.txt >&2
fi
echo "$PWD/target/pyenv/bin/python"
