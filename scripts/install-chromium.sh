#!/bin/sh
# Installs Chromium and its WebDriver (Debian's chromium, chromium-driver) for
# the web UI browser test (tests/ui_browser.rs), when they are missing and we
# are root with apt-get. Never fails: without them that test skips.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: not root with apt-get; the browser test will skip" >&2
    exit 0
fi
echo "install-chromium: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium chromium-driver >/tmp/install-chromium.log 2>&1; then
    # The package lists may be missing or stale: refresh them once.
    apt-get update -q >>/tmp/install-chromium.log 2>&1 &&
        apt-get install -y -q chromium chromium-driver >>/tmp/install-chromium.log 2>&1 ||
        echo "install-chromium: failed (see /tmp/install-chromium.log); the browser test will skip" >&2
fi
exit 0
