# shellcheck shell=bash
# Host preparation shared by scripts/test and scripts/demo. Every step is idempotent:
# it checks before it installs or starts, so a second run is quick and changes nothing.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="${FLEET_VENV:-$REPO_ROOT/.venv}"
STATE_DIR="${FLEET_STATE_DIR:-/var/tmp/metrica-fleet}"
PG_PORT="${FLEET_PG_PORT:-55432}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "this step needs root (apt, services, loop devices); run it with sudo"
}

install_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "host packages: all present"
        return
    fi
    need_root
    say "host packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_apt_packages() {
    local packages
    mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' \
        "$REPO_ROOT/scripts/apt-packages.txt")
    install_packages "${packages[@]}"
}

ensure_venv() {
    local python="${FLEET_PYTHON:-python3}"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$python is older than 3.11"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            need_root
            say "venv: installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
        fi
        say "venv: creating $VENV"
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed" want
    want=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "venv: installing metrica-fleet[all]"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$REPO_ROOT[all]"
        echo "$want" > "$stamp"
    else
        say "venv: up to date"
    fi
}

start_postgres() {
    need_root
    local bin pgdata="$STATE_DIR/postgres" sock="$STATE_DIR/pgsock"
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    mkdir -p "$STATE_DIR" "$sock"
    chown postgres:postgres "$sock"
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        say "postgres: initdb $pgdata"
        install -d -o postgres -g postgres "$pgdata"
        runuser -u postgres -- "$bin/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
    fi
    if ! runuser -u postgres -- "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        say "postgres: starting on 127.0.0.1:$PG_PORT"
        runuser -u postgres -- "$bin/pg_ctl" -D "$pgdata" -w -t 60 -l "$pgdata/server.log" \
            -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" \
            start >/dev/null
    else
        say "postgres: running"
    fi
    export FLEET_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
}

start_dockerd() {
    need_root
    if docker info >/dev/null 2>&1; then
        say "dockerd: running"
        return
    fi
    command -v dockerd >/dev/null || die "dockerd not installed (package docker.io)"
    say "dockerd: starting"
    mkdir -p "$STATE_DIR"
    nohup dockerd --host unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 &
    local i
    for i in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    die "dockerd did not come up in 60 s; see $STATE_DIR/dockerd.log"
}

enable_binfmt_arm64() {
    need_root
    [ "$(uname -m)" = "aarch64" ] && return
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        say "binfmt: registering qemu-aarch64"
        local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        [ -f "$conf" ] || die "$conf missing (package qemu-user-static)"
        grep -v '^#' "$conf" > /proc/sys/fs/binfmt_misc/register
    else
        say "binfmt: qemu-aarch64 registered"
    fi
}
