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
    install_compose_v2
}

# Docker Compose v2 as the docker CLI plugin (`docker compose`), which devices run. Debian 12
# ships only compose v1 (`docker-compose`, kept installed: the role tests run against both).
# The plugin comes from Debian's next release, fetched with a private apt configuration (its
# own sources, lists and cache), so the system's sources never name that release: apt checks
# the .deb against the signed Packages index, and only its static binary is installed.
COMPOSE_V2_SUITE="${FLEET_COMPOSE_V2_SUITE:-trixie}"
COMPOSE_V2_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

compose_v2_version() {
    local version
    version=$("$COMPOSE_V2_PLUGIN" version --short 2>/dev/null) || return 1
    case "${version#v}" in
        2.*) printf '%s\n' "${version#v}" ;;
        *) return 1 ;;
    esac
}

install_compose_v2() {
    local version
    if version=$(compose_v2_version); then
        say "docker compose v2: $version present"
        return
    fi
    need_root
    say "docker compose v2: fetching docker-compose from Debian $COMPOSE_V2_SUITE"
    local apt_root="$STATE_DIR/apt-$COMPOSE_V2_SUITE" work arch
    arch=$(dpkg --print-architecture)
    mkdir -p "$apt_root"/{lists/partial,cache/archives/partial,sources.list.d,preferences.d}
    touch "$apt_root/status"
    printf 'deb [arch=%s signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$arch" "http://deb.debian.org/debian" "$COMPOSE_V2_SUITE" > "$apt_root/sources.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$apt_root/sources.list"
        -o "Dir::Etc::SourceParts=$apt_root/sources.list.d"
        -o "Dir::Etc::Preferences=$apt_root/preferences"
        -o "Dir::Etc::PreferencesParts=$apt_root/preferences.d"
        -o "Dir::State::Lists=$apt_root/lists"
        -o "Dir::State::Status=$apt_root/status"
        -o "Dir::Cache=$apt_root/cache"
        -o "APT::Architecture=$arch"
        -o "APT::Architectures::=$arch"
        -o "Acquire::Languages=none"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" -qq update
    work=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $work now: the trap runs after the local is gone
    trap "rm -rf '$work'; trap - RETURN" RETURN
    (cd "$work" && apt-get "${apt_opts[@]}" -qq download docker-compose)
    dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
    local binary
    binary=$(find "$work/root" -type f -name docker-compose -perm -u+x | head -n 1)
    [ -n "$binary" ] || die "the $COMPOSE_V2_SUITE docker-compose package holds no docker-compose binary"
    install -d "$(dirname "$COMPOSE_V2_PLUGIN")"
    install -m 0755 "$binary" "$COMPOSE_V2_PLUGIN.new"
    mv -f "$COMPOSE_V2_PLUGIN.new" "$COMPOSE_V2_PLUGIN"
    version=$(compose_v2_version) || die "$COMPOSE_V2_PLUGIN does not report a compose v2 version"
    docker compose version >/dev/null 2>&1 || die "docker does not find the compose plugin at $COMPOSE_V2_PLUGIN"
    say "docker compose v2: $version installed"
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
        "$VENV/bin/python" -m pip install -q -e "${REPO_ROOT}[all]"
        echo "$want" > "$stamp"
    else
        say "venv: up to date"
    fi
}

# Debian bookworm's own Python (3.11.2, what devices run: no tarfile.data_filter, older
# stdlib fixes) in its own venv, so device code is tested on the interpreter it ships with.
DEVICE_PYTHON="${FLEET_DEVICE_PYTHON:-/usr/bin/python3.11}"
DEVICE_VENV="${FLEET_DEVICE_VENV:-$REPO_ROOT/.venv-device}"

ensure_device_venv() {
    [ -x "$DEVICE_PYTHON" ] || die "$DEVICE_PYTHON missing (Debian package python3.11)"
    if [ ! -x "$DEVICE_VENV/bin/python" ]; then
        say "device venv: creating $DEVICE_VENV with $("$DEVICE_PYTHON" --version)"
        "$DEVICE_PYTHON" -m venv "$DEVICE_VENV"
    fi
    local stamp="$DEVICE_VENV/.installed" want
    want=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "device venv: installing metrica-fleet[device,build] and the test runner"
        "$DEVICE_VENV/bin/python" -m pip install -q -e "${REPO_ROOT}[device,build]" \
            pytest pytest-timeout pytest-mock hypothesis
        echo "$want" > "$stamp"
    else
        say "device venv: up to date"
    fi
}

# The whole suite's peak disk use (disk images, role images, the base rootfs cache) was about
# 22 GiB in a full run with every tier at once (session 8); this leaves room for growth.
NEEDED_FREE_GIB="${FLEET_NEEDED_FREE_GIB:-30}"

check_free_space() {
    local dir free_gib
    mkdir -p "$STATE_DIR"
    for dir in "$STATE_DIR" "${TMPDIR:-/tmp}"; do
        free_gib=$(( $(df --output=avail -k "$dir" | tail -1) / 1048576 ))
        [ "$free_gib" -ge "$NEEDED_FREE_GIB" ] || die "$dir has $free_gib GiB free; the whole \
suite needs $NEEDED_FREE_GIB GiB (set FLEET_NEEDED_FREE_GIB to override)"
    done
    say "disk: $free_gib GiB free"
}

start_postgres() {
    need_root
    local bin pgdata="$STATE_DIR/postgres" sock="$STATE_DIR/pgsock"
    bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)
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
    local _
    for _ in $(seq 1 60); do
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
