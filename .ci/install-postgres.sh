#!/usr/bin/env bash
# Install a PostgreSQL server (Debian/Ubuntu packages) for the tests marked `postgres`.
# Idempotent: does nothing when initdb and pg_ctl are already under /usr/lib/postgresql/*/bin.
# The tests start their own throwaway cluster (tests/postgres.py), so no cluster is created here.
set -euo pipefail

have_server() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
  done
  return 1
}

if have_server; then
  echo "PostgreSQL server binaries already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# Do not create (and start) the packaged 'main' cluster: the tests make their own.
$SUDO mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql

if ! have_server; then
  echo "install-postgres: postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2
  exit 1
fi
echo "PostgreSQL server binaries: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
