#!/bin/sh
# What the test suite needs beyond Python, each installed only when it is missing:
# - nginx, the TLS load balancer of the production-topology tests (tests/topology/);
# - chromium, the browser of the browser tests (tests/browser/), which Playwright drives
#   (Playwright's own browser builds are never downloaded);
# - the OpenID provider of the single sign-on tests (tests/oidc/), from its package-lock.json.
# Idempotent and quick when everything is there; the package lists are refreshed only when an
# install fails without it.
set -eu

PATH="$PATH:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

# apt_install PACKAGE: installs a Debian package (as root).
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$1 is missing and installing it needs root: run 'sudo $0' (or apt-get install $1)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$1"; then
        apt-get update
        apt-get install -y --no-install-recommends "$1"
    fi
}

if ! command -v nginx >/dev/null 2>&1; then
    apt_install nginx
    # The tests run their own nginx processes on loopback ports; the packaged service is not
    # needed (and would hold port 80).
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
        systemctl stop nginx || true
    fi
fi

if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi

# npm writes node_modules/.package-lock.json last: without it (or older than the lock file)
# the install is missing, unfinished or stale.
installed=tests/oidc/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/oidc/package-lock.json -nt "$installed" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is missing: the OpenID provider of tests/oidc/ runs under Node.js 20 or later" >&2
        exit 1
    fi
    npm ci --prefix tests/oidc --no-audit --no-fund
fi
