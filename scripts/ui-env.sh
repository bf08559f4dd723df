#!/bin/sh
# Makes the Python venv used by the web UI browser test (tests/ui/, run by
# tests/ui_browser.rs, which calls this script) and prints the path of its
# python. Run the browser script by hand against a broker's HTTP port with it:
#   "$(scripts/ui-env.sh)" tests/ui/browser_test.py --port 15672
# The browser itself comes from Debian: scripts/install-chromium.sh.
set -eu
cd "$(dirname "$0")/.."
if ! target/uienv/bin/python -c 'import selenium' >/dev/null 2>&1; then
    mkdir -p target
    python3 -m venv --clear target/uienv >&2
    target/uienv/bin/pip install -q --disable-pip-version-check -r tests/ui/requirements.txt >&2
fi
echo "$PWD/target/uienv/bin/python"
