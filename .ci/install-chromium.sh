#!/bin/sh
# Debian's chromium for the console's browser tests (Playwright drives /usr/bin/chromium; no `playwright install`).
# Idempotent: does nothing when chromium is there. Needs root (or sudo) on a fresh Debian machine.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-chromium: /usr/bin/chromium is missing and we are not root: the browser tests will be skipped" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get (not Debian): the browser tests will be skipped" >&2
    exit 0
fi
echo "install-chromium: installing Debian's chromium (console browser tests)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version >&2
