#!/usr/bin/env bash
# Install (Debian packages) and start what the test suite needs: PostgreSQL, Redis, the CNI plugins and iptables.
# Idempotent: does nothing that is already done. Prints the environment to export on stdout's last lines.
set -euo pipefail

PG_USER=${SPIDERWEB_TEST_PG_USER:-spiderweb}
PG_PASSWORD=${SPIDERWEB_TEST_PG_PASSWORD:-spiderweb}
PG_DB=${SPIDERWEB_TEST_PG_DB:-spiderweb}
REDIS_PORT=${SPIDERWEB_TEST_REDIS_PORT:-6379}

need=()
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/lib/cni/macvlan ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v openssl >/dev/null || need+=(openssl)
command -v ping >/dev/null || need+=(iputils-ping)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

# PostgreSQL: the newest installed cluster, started with pg_ctlcluster (no systemd in CI containers).
read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS _ < <(pg_lsclusters -h | sort -V | tail -1)
if [ -z "${PG_VERSION:-}" ]; then
  PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_createcluster "$PG_VERSION" main >&2
  read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS _ < <(pg_lsclusters -h | sort -V | tail -1)
fi
if [ "$PG_STATUS" != "online" ]; then
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2
fi
for _ in $(seq 1 30); do
  su postgres -c "psql -p $PG_PORT -Atc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $PG_PORT -v ON_ERROR_STOP=1 -q" >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
if ! su postgres -c "psql -p $PG_PORT -Atc \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1; then
  su postgres -c "createdb -p $PG_PORT -O $PG_USER $PG_DB" >&2
fi
# The race tests and benchmarks open many connections at once.
current=$(su postgres -c "psql -p $PG_PORT -Atc 'show max_connections'")
if [ "$current" -lt 200 ]; then
  su postgres -c "psql -p $PG_PORT -qc 'alter system set max_connections = 300'" >&2
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart >&2
fi

# Redis on loopback only.
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no >&2
  for _ in $(seq 1 20); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

echo "DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
echo "CELERY_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0"
