# shellcheck shell=bash
# Shared by the ops scripts in this folder: paths, messages, .env loading, the compose command
# and health waiting. Sourced, never run.

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$DEPLOY_DIR/../.." && pwd)
ENV_FILE="${FLEET_ENV_FILE:-$DEPLOY_DIR/.env}"
RENDERED_DIR="$DEPLOY_DIR/.rendered"
PROG=$(basename "$0")

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    [ $# -lt 2 ] || printf '%s: hint: %s\n' "$PROG" "$2" >&2
    exit 1
}

require_cmd() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found on PATH" \
            "install it (see docs/operations.md, \"Install on a VPS\")"
    done
}

# Export KEY=value lines of the .env file literally (no shell expansion, like compose reads
# it). A variable already set in the environment wins, as it does for compose.
load_env() {
    [ -f "$ENV_FILE" ] || die "$ENV_FILE not found" \
        "copy $DEPLOY_DIR/.env.example to .env and fill it in"
    local line key value lineno=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        case "$line" in '' | '#'*) continue ;; esac
        [[ "$line" == *=* ]] || die "$ENV_FILE:$lineno: expected KEY=value, got: $line"
        key=${line%%=*}
        value=${line#*=}
        [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "$ENV_FILE:$lineno: bad variable name '$key'"
        [ -n "${!key+set}" ] || export "$key=$value"
    done <"$ENV_FILE"
}

# Refuse to go on while .env still holds the example's placeholders.
check_env_filled() {
    local placeholders
    placeholders=$(grep -E '^[A-Za-z_][A-Za-z0-9_]*=change-me$' "$ENV_FILE" | cut -d= -f1 | tr '\n' ' ')
    [ -z "$placeholders" ] || die "$ENV_FILE still has placeholder values: $placeholders" \
        "set real secrets (e.g. openssl rand -base64 24) before deploying"
}

# docker compose v2 if present, else docker-compose v1; always with this folder's file, plus
# FLEET_COMPOSE_OVERRIDE when set (a site's own tweaks layered on top, like compose's usual
# docker-compose.override.yml, which an explicit -f turns off).
compose() {
    local -a base
    if docker compose version >/dev/null 2>&1; then
        base=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        base=(docker-compose)
    else
        die "neither 'docker compose' nor docker-compose is installed" \
            "install the docker compose plugin (package docker-compose-plugin or docker-compose)"
    fi
    local -a files=(-f "$DEPLOY_DIR/docker-compose.yml")
    [ -z "${FLEET_COMPOSE_OVERRIDE:-}" ] || files+=(-f "$FLEET_COMPOSE_OVERRIDE")
    "${base[@]}" --project-directory "$DEPLOY_DIR" "${files[@]}" \
        --env-file "$ENV_FILE" -p "${COMPOSE_PROJECT_NAME:-metrica-fleet}" "$@"
}

# Containers of one service of this project, by the labels compose v1 and v2 both set.
service_containers() {
    docker ps -q --filter "label=com.docker.compose.project=${COMPOSE_PROJECT_NAME:-metrica-fleet}" \
        --filter "label=com.docker.compose.service=$1" --filter "label=com.docker.compose.oneoff=False"
}

# Wait until every container of the given services reports healthy.
wait_healthy() {
    local timeout=$1 service ids id status deadline
    shift
    deadline=$((SECONDS + timeout))
    for service in "$@"; do
        ids=$(service_containers "$service")
        [ -n "$ids" ] || die "service $service has no container" "look at: bin/logs $service"
        for id in $ids; do
            while :; do
                status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
                case "$status" in
                    healthy) break ;;
                    unhealthy | exited | dead)
                        die "service $service is $status" "look at: bin/logs $service" ;;
                esac
                [ "$SECONDS" -lt "$deadline" ] || die "service $service not healthy after ${timeout}s (now: $status)" \
                    "look at: bin/logs $service"
                sleep 2
            done
        done
    done
}

# libpq cannot read SQLAlchemy's driver suffix: postgresql+psycopg:// -> postgresql://
libpq_url() {
    local url=$1
    case "$url" in
        postgresql+*://*) printf 'postgresql://%s' "${url#*://}" ;;
        postgres://* | postgresql://*) printf '%s' "$url" ;;
        *) die "not a PostgreSQL URL: ${url%%://*}://..." "use postgresql://user@host:port/db" ;;
    esac
}

# The database name of a libpq URL, and the same URL pointing at the maintenance database.
url_dbname() {
    local rest=${1#*://}
    rest=${rest%%\?*}
    [[ "$rest" == */* ]] || die "the database URL names no database" "end it with /DBNAME"
    printf '%s' "${rest##*/}"
}
url_with_dbname() {
    local url=$1 db=$2 query=""
    [[ "$url" == *\?* ]] && query="?${url#*\?}"
    url=${url%%\?*}
    printf '%s/%s%s' "${url%/*}" "$db" "$query"
}

# Services that run the Overlord's code (stopped during a restore); what devices need; the
# observability services, whose failure must not stop the rest.
OVERLORD_SERVICES=(overlord scheduler)
CORE_SERVICES=(postgres overlord scheduler nginx)
OBSERVABILITY_SERVICES=(prometheus alertmanager grafana loki node-exporter)

# Wait for the core services (fail if they do not come up), then for observability (warn only).
wait_stack_healthy() {
    local timeout=$1
    wait_healthy "$timeout" "${CORE_SERVICES[@]}"
    if ! (wait_healthy "$timeout" "${OBSERVABILITY_SERVICES[@]}"); then
        say "warning: the Overlord is up, but monitoring is not healthy (see the error above)"
    fi
}
