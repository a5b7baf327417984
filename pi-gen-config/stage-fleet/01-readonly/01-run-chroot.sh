#!/bin/bash -e
# Writable identity files are symlinks into /data, which the initramfs mounts before systemd
# starts (scripts/init-bottom/fleet-data), so PID 1 already reads the persistent machine-id.
# Mount points of the config partition, /data and the bind mounts from /data (see fstab).
install -d /data /boot/config /boot/firmware /var/lib/docker /var/lib/containerd \
	/var/lib/systemd /var/lib/NetworkManager /var/log /etc/NetworkManager /etc/modprobe.d
ln -sfn /data/etc/machine-id /etc/machine-id
# The updater applies fleet.yaml's hostname and Wi-Fi (updater/personalise.py) by writing
# these targets on /data; the initramfs creates every one before systemd starts.
ln -sfn /data/etc/hostname /etc/hostname
# NetworkManager keyfiles (the Wi-Fi from fleet.yaml, nmcli changes) live on /data.
rm -rf /etc/NetworkManager/system-connections
ln -sfn /data/etc/NetworkManager/system-connections /etc/NetworkManager/system-connections
# The Wi-Fi country: cfg80211's ieee80211_regdom option. The link dangles in the build chroot;
# mkinitramfs skips it, and the initramfs needs no Wi-Fi module.
ln -sfn /data/etc/modprobe.d/metrica-wifi-country.conf /etc/modprobe.d/metrica-wifi-country.conf
rm -f /var/lib/dbus/machine-id
ln -sfn /etc/machine-id /var/lib/dbus/machine-id
# ssh host keys are generated on the device (fleet-hostkeys.service), never baked into the image.
rm -f /etc/ssh/ssh_host_*
systemctl disable regenerate_ssh_host_keys.service 2>/dev/null || true
systemctl enable fleet-hostkeys.service
# Swap files, resize-on-boot and apt timers make no sense on a read-only image.
# resize2fs_once (pi-gen stage2) would resize the root: the root is a read-only system slot.
for unit in dphys-swapfile.service apt-daily.timer apt-daily-upgrade.timer \
	man-db.timer e2scrub_reclaim.timer resize2fs_once.service; do
	systemctl disable "$unit" 2>/dev/null || true
done
systemctl mask systemd-machine-id-commit.service
# Regenerate the initramfs with the fleet hook and module list (the kernel hooks copy it to
# /boot/firmware).
for kdir in /lib/modules/*; do
	version="$(basename "$kdir")"
	if [ -e "/boot/initrd.img-$version" ]; then
		update-initramfs -u -k "$version"
	else
		update-initramfs -c -k "$version"
	fi
done
