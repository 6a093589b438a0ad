#!/usr/bin/env bash
# Installs Debian's Chromium for the report's browser test (test/sim/report.test.ts) and for
# scripts/screenshot-report.ts, which drive it through playwright-core. Idempotent: does nothing
# when /usr/bin/chromium is already there. Playwright's own browser download is never used.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present) at /usr/bin/chromium"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: /usr/bin/chromium is missing and apt-get is not available; install Chromium by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-chromium: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed) at /usr/bin/chromium"
