#!/usr/bin/env bash
# iel-entrypoint: one image, several roles.  The first argument picks the role; the rest is passed on.
#
#   head   [RAY START ARGS]     Ray head node (ray start --head --block)
#   worker [RAY START ARGS]     Ray worker node joining $IEL_RAY_HEAD (ray start --address --block)
#   mlflow [MLFLOW SERVER ARGS] MLflow tracking server; creates its PostgreSQL database when missing
#   submit STUDY.yaml [ARGS]    the driver: iel submit (address, database, MLflow from $IEL_*)
#   healthcheck                 exit 0 when the role this container runs is healthy (Docker HEALTHCHECK)
#   anything else               exec'd as given (iel results ..., ray job submit ..., bash)
#
# Configuration comes from the environment only (nothing secret is baked into the image):
#   IEL_RAY_PORT (6379), IEL_RAY_CLIENT_PORT (10001), IEL_RAY_DASHBOARD (true), IEL_RAY_DASHBOARD_PORT (8265),
#   IEL_RAY_HEAD (worker: head's HOST:PORT), IEL_RAY_NUM_CPUS / IEL_RAY_NUM_GPUS (default: detected),
#   IEL_RAY_NODE_IP, IEL_RAY_TEMP_DIR, IEL_RAY_OBJECT_STORE_BYTES;
#   MLFLOW_BACKEND_STORE_URI, IEL_MLFLOW_HOST (0.0.0.0), IEL_MLFLOW_PORT (5000);
#   RAY_AUTH_MODE=token + RAY_AUTH_TOKEN for Ray's token authentication (read by Ray itself);
#   IEL_ROLE_FILE (/tmp/iel-role): where the role is noted for `healthcheck`;
#   IEL_DRY_RUN=1: print the command instead of running it.
set -euo pipefail

ROLE_FILE="${IEL_ROLE_FILE:-/tmp/iel-role}"

die() {
    echo "iel-entrypoint: $*" >&2
    exit 2
}

run() {
    if [[ "${IEL_DRY_RUN:-0}" == "1" ]]; then
        printf '%q ' "$@"
        printf '\n'
        exit 0
    fi
    exec "$@"
}

note_role() {
    [[ "${IEL_DRY_RUN:-0}" == "1" ]] || printf '%s\n' "$1" >"$ROLE_FILE"
}

# Options shared by head and worker nodes; an unset variable leaves the choice to Ray.
ray_node_args() {
    RAY_ARGS=(--block --disable-usage-stats)
    [[ -n "${IEL_RAY_NODE_IP:-}" ]] && RAY_ARGS+=("--node-ip-address=${IEL_RAY_NODE_IP}")
    [[ -n "${IEL_RAY_NUM_CPUS:-}" ]] && RAY_ARGS+=("--num-cpus=${IEL_RAY_NUM_CPUS}")
    [[ -n "${IEL_RAY_NUM_GPUS:-}" ]] && RAY_ARGS+=("--num-gpus=${IEL_RAY_NUM_GPUS}")
    [[ -n "${IEL_RAY_TEMP_DIR:-}" ]] && RAY_ARGS+=("--temp-dir=${IEL_RAY_TEMP_DIR}")
    [[ -n "${IEL_RAY_OBJECT_STORE_BYTES:-}" ]] && RAY_ARGS+=("--object-store-memory=${IEL_RAY_OBJECT_STORE_BYTES}")
    return 0
}

# Create the database of $MLFLOW_BACKEND_STORE_URI when it is PostgreSQL and missing (the postgres image
# creates only $POSTGRES_DB).  Waits up to IEL_DB_WAIT_S (60) seconds for the server.  The URL, password
# included, is read from the environment, never from the command line.
ensure_mlflow_database() {
    python - <<'PY'
import os, sys, time

from sqlalchemy.engine import make_url

url = make_url(os.environ["MLFLOW_BACKEND_STORE_URI"])
if not url.drivername.startswith("postgresql") or not url.database:
    sys.exit(0)
import psycopg
from psycopg import errors, sql

params = dict(host=url.host or "localhost", port=url.port or 5432, user=url.username,
              password=url.password, dbname=os.environ.get("IEL_PG_ADMIN_DB", "postgres"),
              autocommit=True, connect_timeout=5)
deadline = time.monotonic() + float(os.environ.get("IEL_DB_WAIT_S", "60"))
while True:
    try:
        conn = psycopg.connect(**params)
        break
    except psycopg.OperationalError as e:
        if time.monotonic() > deadline:
            sys.exit(f"iel-entrypoint: PostgreSQL at {url.host}:{url.port or 5432} unreachable: {e}")
        time.sleep(1)
with conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone() is None:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            print(f"iel-entrypoint: created database {url.database!r}", file=sys.stderr)
        except errors.DuplicateDatabase:  # another replica was faster
            pass
PY
}

healthcheck() {
    local role
    role="$(cat "$ROLE_FILE" 2>/dev/null || echo none)"
    case "$role" in
        head)
            exec ray health-check --address "${IEL_RAY_NODE_IP:-127.0.0.1}:${IEL_RAY_PORT:-6379}"
            ;;
        worker)
            exec ray health-check --address "${IEL_RAY_HEAD:?IEL_RAY_HEAD is not set}"
            ;;
        mlflow)
            local host="${IEL_MLFLOW_HOST:-0.0.0.0}"
            [[ "$host" == "0.0.0.0" || "$host" == "::" ]] && host=127.0.0.1
            exec python -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.exit(0 if r.status == 200 else 1)' "http://${host}:${IEL_MLFLOW_PORT:-5000}/health"
            ;;
        *)
            exit 0 # one-shot commands (submit, iel ...) have nothing to check
            ;;
    esac
}

role="${1:-}"
[[ $# -gt 0 ]] && shift
case "$role" in
    head)
        ray_node_args
        RAY_ARGS+=(--head "--port=${IEL_RAY_PORT:-6379}" "--ray-client-server-port=${IEL_RAY_CLIENT_PORT:-10001}")
        if [[ "${IEL_RAY_DASHBOARD:-true}" == "true" ]]; then
            RAY_ARGS+=(--include-dashboard=true "--dashboard-host=${IEL_RAY_DASHBOARD_HOST:-0.0.0.0}"
                "--dashboard-port=${IEL_RAY_DASHBOARD_PORT:-8265}")
        else
            RAY_ARGS+=(--include-dashboard=false)
        fi
        note_role head
        run ray start "${RAY_ARGS[@]}" "$@"
        ;;
    worker)
        [[ -n "${IEL_RAY_HEAD:-}" ]] || die "set IEL_RAY_HEAD to the head's HOST:PORT (e.g. ray-head:6379)"
        ray_node_args
        note_role worker
        run ray start "--address=${IEL_RAY_HEAD}" "${RAY_ARGS[@]}" "$@"
        ;;
    mlflow)
        [[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]] || die "set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB)"
        [[ "${IEL_DRY_RUN:-0}" == "1" ]] || ensure_mlflow_database
        note_role mlflow
        run python -m mlflow server --host "${IEL_MLFLOW_HOST:-0.0.0.0}" --port "${IEL_MLFLOW_PORT:-5000}" "$@"
        ;;
    submit)
        [[ $# -gt 0 ]] || die "usage: submit STUDY.yaml [iel submit options]"
        note_role submit
        run iel submit "$@"
        ;;
    healthcheck)
        healthcheck
        ;;
    "")
        die "no role given: head | worker | mlflow | submit STUDY.yaml | healthcheck | COMMAND..."
        ;;
    *)
        run "$role" "$@"
        ;;
esac
