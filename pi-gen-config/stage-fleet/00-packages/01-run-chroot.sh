#!/bin/bash -e
# Docker Compose v2: the `docker compose` CLI plugin, which the role manager (updater/roles)
# runs. Debian bookworm, and so Raspberry Pi OS bookworm, ships only compose v1, and
# bookworm-backports has no docker-compose; trixie's docker-compose package is v2 (one Go
# binary that needs only libc6 >= 2.34). apt fetches it with a private configuration (its own
# sources, lists and cache in a temporary folder), so the image's sources never name trixie:
# apt checks trixie's InRelease against the Debian archive keyring and the .deb against the
# signed Packages index. Only the binary (61 MB, 16 MB in the squashfs system image) and the
# package's copyright file are installed, with a note of what was fetched; dpkg does not list
# them. Skipped when docker already finds a v2 plugin. See docs/adr/0052.
COMPOSE_SUITE=trixie
MIRROR="${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose
DOC=/usr/share/doc/docker-compose

compose_v2() {
	local version
	version="$(docker compose version --short 2>/dev/null)" || return 1
	version="${version#v}"
	[[ ${version} == 2.* ]] && echo "${version}"
}

if version="$(compose_v2)"; then
	echo "docker compose ${version}: present"
	exit 0
fi
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}"/apt/{lists/partial,cache/archives/partial,sources.list.d,preferences.d}
touch "${work}/apt/status"
echo "deb [arch=${arch} signed-by=${KEYRING}] ${MIRROR} ${COMPOSE_SUITE} main" >"${work}/apt/sources.list"
apt=(
	apt-get -q
	-o "Dir::Etc::SourceList=${work}/apt/sources.list"
	-o "Dir::Etc::SourceParts=${work}/apt/sources.list.d"
	-o "Dir::Etc::Preferences=${work}/apt/preferences"
	-o "Dir::Etc::PreferencesParts=${work}/apt/preferences.d"
	-o "Dir::State::Lists=${work}/apt/lists"
	-o "Dir::State::Status=${work}/apt/status"
	-o "Dir::Cache=${work}/apt/cache"
	-o "APT::Architecture=${arch}"
	-o "APT::Architectures::=${arch}"
	-o "Acquire::Languages=none"
	-o "APT::Sandbox::User=root"
)
"${apt[@]}" update --error-on=any
(cd "${work}" && "${apt[@]}" download docker-compose)
debs=("${work}"/docker-compose_*_"${arch}".deb)
deb="${debs[0]}"
dpkg-deb -x "${deb}" "${work}/root"
[ -x "${work}/root${PLUGIN}" ] || { echo "${deb##*/} has no ${PLUGIN}" >&2; exit 1; }
install -D -m 755 "${work}/root${PLUGIN}" "${PLUGIN}"
install -D -m 644 "${work}/root${DOC}/copyright" "${DOC}/copyright"
printf 'docker-compose %s (%s) from Debian %s, %s\nsha256 %s\n' \
	"$(dpkg-deb -f "${deb}" Version)" "${arch}" "${COMPOSE_SUITE}" "${MIRROR}" \
	"$(sha256sum <"${deb}" | cut -d' ' -f1)" >"${DOC}/SOURCE"
version="$(compose_v2)" || { echo "docker compose does not report a 2.x version" >&2; exit 1; }
echo "docker compose ${version}: installed from Debian ${COMPOSE_SUITE}"
