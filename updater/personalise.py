"""Apply the per-device settings of ``fleet.yaml``: the hostname and the Wi-Fi network.

The image cannot carry them (one image goes to every card), and its root is read-only, so
they land on /data where the image links them in: ``/etc/hostname`` is a link to
``/data/etc/hostname``, ``/etc/NetworkManager/system-connections`` lives on
``/data/etc/NetworkManager/system-connections`` and ``/etc/modprobe.d/metrica-wifi-country.conf``
is a link into ``/data/etc/modprobe.d``. Every write is atomic and skipped when the content is
already there, so this runs at every agent cycle and follows an edited ``fleet.yaml``.

Wi-Fi follows Raspberry Pi OS bookworm's own customisation (raspberrypi-sys-mods
``imager_custom set_wlan``): a NetworkManager keyfile, mode 0600 or NetworkManager ignores
it, reloaded with ``nmcli``. NetworkManager has no regulatory-domain setting, so the country
goes where Raspberry Pi OS puts it: the ``cfg80211`` ``ieee80211_regdom`` parameter (as a
module option on /data, since the kernel command line is part of the signed boot image) and,
for the running kernel, ``iw reg set`` and ``rfkill unblock wifi``.

A Wi-Fi key leaves the FAT partition once applied on an enrolled device (before enrolment the
token and key leave together, see :func:`updater.firstboot.move_secrets`); the key is then
read from the /data copy while the FAT copy names the same network.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fleetcore.atomic import atomic_write, fsync_dir
from fleetcore.errors import CommandError
from fleetcore.firstboot import FirstBoot, WiFi
from fleetcore.run import run
from updater.firstboot import load_firstboot, move_secrets
from updater.paths import Roots

log = logging.getLogger(__name__)

CONNECTION_ID = "metrica-wifi"
# Stable across rewrites, so NetworkManager sees one connection being updated.
CONNECTION_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "https://metrica-fleet/nm/metrica-wifi")
_PLAIN_SSID = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._-")
_TOOL_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")


def desired_settings(roots: Roots) -> FirstBoot | None:
    """``fleet.yaml`` from the config partition, its Wi-Fi key filled in from the /data copy.

    After the key left the FAT partition, the FAT copy still names the network; the /data
    copy has the key as long as it names the same network.
    """
    fat = load_firstboot(roots.fleet_yaml) if roots.fleet_yaml.exists() else None
    kept = load_firstboot(roots.firstboot_copy) if roots.firstboot_copy.exists() else None
    if fat is None:
        return kept
    if (
        fat.wifi is not None
        and fat.wifi.psk is None
        and kept is not None
        and kept.wifi is not None
        and kept.wifi.ssid == fat.wifi.ssid
        and kept.wifi.psk is not None
    ):
        return fat.model_copy(update={"wifi": fat.wifi.model_copy(update={"psk": kept.wifi.psk})})
    return fat


def _keyfile_string(value: str) -> str:
    """A GKeyFile string value: backslashes and spaces escaped (edge spaces would be lost)."""
    return value.replace("\\", "\\\\").replace(" ", "\\s")


def _keyfile_ssid(ssid: str) -> str:
    """Plain when unambiguous, else the byte list NetworkManager's keyfile reader accepts."""
    if set(ssid) <= _PLAIN_SSID and ssid.strip() == ssid and not ssid.isdigit():
        return ssid
    return "".join(f"{byte};" for byte in ssid.encode())


def nm_keyfile(wifi: WiFi) -> bytes:
    """The NetworkManager connection profile of ``wifi``: WPA2-PSK, or open without a key."""
    lines = [
        "[connection]",
        f"id={CONNECTION_ID}",
        f"uuid={CONNECTION_UUID}",
        "type=wifi",
        "autoconnect=true",
        "",
        "[wifi]",
        "mode=infrastructure",
        f"ssid={_keyfile_ssid(wifi.ssid)}",
        "",
    ]
    if wifi.psk is not None:
        lines += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={_keyfile_string(wifi.psk)}", ""]
    lines += ["[ipv4]", "method=auto", "", "[ipv6]", "addr-gen-mode=default", "method=auto", ""]
    return "\n".join(lines).encode()


def country_options(country: str | None) -> bytes:
    """The modprobe.d file; present without a country too, so the image's link resolves."""
    if country is None:
        return b"# fleet.yaml sets no Wi-Fi country: the kernel's default domain applies\n"
    return f"options cfg80211 ieee80211_regdom={country}\n".encode()


def _write(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
    """Atomically write ``data`` unless it is there already; True when something changed."""
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=mode)
    return True


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


@dataclass
class Personaliser:
    """Converges the device on its ``fleet.yaml``; commands only run when something changed
    (and once per agent start for the volatile kernel settings)."""

    roots: Roots
    applied_once: bool = field(default=False, init=False)

    def tool(self, name: str) -> str | None:
        """A tool of the running image (below ``roots.root``), or None when it lacks it."""
        path = os.pathsep.join(str(self.roots.root / d) for d in _TOOL_DIRS)
        return shutil.which(name, path=path)

    def _command(self, *argv: str) -> None:
        program = self.tool(argv[0])
        if program is None:
            log.info("%s not installed; skipped", argv[0])
            return
        try:
            run([program, *argv[1:]], timeout=60)
        except CommandError as err:
            log.warning("%s", err)

    def apply(self, *, enrolled: bool) -> None:
        settings = desired_settings(self.roots)
        if settings is None:
            return
        self.apply_hostname(settings.hostname)
        self.apply_wifi(settings.wifi, runtime=not self.applied_once)
        self.applied_once = True
        if enrolled:
            move_secrets(self.roots.fleet_yaml, self.roots.firstboot_copy)

    def apply_hostname(self, name: str) -> None:
        if _write(self.roots.hostname_file, f"{name}\n".encode()):
            log.info("hostname set to %s in %s", name, self.roots.hostname_file)
        if socket.gethostname() == name:
            return
        if self.tool("hostnamectl") is not None:
            # Transient only: hostnamed cannot replace /etc/hostname on the read-only root,
            # and it prefers the static name it reads there (the file just written).
            self._command("hostnamectl", "set-hostname", "--transient", name)
        elif self.roots.root == Path("/"):  # only the real device's kernel, never a test's
            try:
                socket.sethostname(name)
            except OSError as err:
                log.warning("cannot set the running hostname: %s", err)

    def apply_wifi(self, wifi: WiFi | None, *, runtime: bool) -> None:
        keyfile = self.roots.nm_connections / f"{CONNECTION_ID}.nmconnection"
        country_file = self.roots.wifi_country_file
        country = wifi.country if wifi else None
        country_changed = _write(country_file, country_options(country))
        if country is not None and (country_changed or runtime):
            self._command("iw", "reg", "set", country)
            self._command("rfkill", "unblock", "wifi")
        changed = (
            _remove(keyfile) if wifi is None else _write(keyfile, nm_keyfile(wifi), mode=0o600)
        )
        if changed:
            log.info("Wi-Fi connection %s %s", keyfile, "written" if wifi else "removed")
        if changed or (runtime and wifi is not None):
            self._command("nmcli", "connection", "reload")
