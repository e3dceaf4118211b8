#!/usr/bin/env sh
# Installs what sluice's demo and tests need, if missing: Deno (from the npm registry),
# redis-server and redis-cli (from Debian's packages; the cluster tests need redis-cli), and
# Chromium (from Debian's packages; the dashboard's browser test drives it). Safe to run again;
# it changes nothing when all are there.
set -eu
DENO_VERSION=2.9.6

if ! command -v deno >/dev/null 2>&1; then
  echo "setup: installing deno@${DENO_VERSION} from the npm registry" >&2
  npm install --global --no-fund --no-audit "deno@${DENO_VERSION}" >&2
  if ! command -v deno >/dev/null 2>&1; then
    echo "setup: deno was installed but is not on PATH; add \"$(npm prefix --global)/bin\" to PATH" >&2
    exit 1
  fi
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
UPDATED=""
apt_install() {
  if [ -z "$UPDATED" ]; then
    $SUDO apt-get update >&2
    UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install --yes "$@" >&2
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "setup: installing redis-server and redis-cli from Debian's packages" >&2
  apt_install --no-install-recommends redis-server redis-tools
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium from Debian's packages (for the dashboard's browser test)" >&2
  apt_install chromium
fi
