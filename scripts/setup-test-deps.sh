#!/bin/sh
# Debian packages the test suite needs beyond Python: nginx, the TLS load balancer of the
# production-topology tests (tests/topology/). Idempotent: with nginx on PATH it does nothing;
# the package lists are refreshed only when nginx has to be installed.
set -eu

PATH="$PATH:/usr/sbin:/sbin"
if command -v nginx >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "nginx is missing and installing it needs root: run 'sudo $0' (or apt-get install nginx)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends nginx; then
    apt-get update
    apt-get install -y --no-install-recommends nginx
fi
# The tests run their own nginx processes on loopback ports; the packaged service is not
# needed (and would hold port 80).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
fi
