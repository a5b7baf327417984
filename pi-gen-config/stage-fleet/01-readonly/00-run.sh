#!/bin/bash -e
# Read-only root: the system partition is mounted ro; everything writable lives on /data.
install -m 644 files/fstab "${ROOTFS_DIR}/etc/fstab"
install -d "${ROOTFS_DIR}/etc/initramfs-tools/scripts/init-bottom" \
	"${ROOTFS_DIR}/etc/initramfs-tools/scripts/local-premount" \
	"${ROOTFS_DIR}/etc/initramfs-tools/conf.d" "${ROOTFS_DIR}/etc/initramfs-tools/hooks"
install -m 755 files/fleet-data "${ROOTFS_DIR}/etc/initramfs-tools/scripts/init-bottom/fleet-data"
install -m 755 files/fleet-verity \
	"${ROOTFS_DIR}/etc/initramfs-tools/scripts/local-premount/fleet-verity"
install -m 755 files/fleet-verity-hook "${ROOTFS_DIR}/etc/initramfs-tools/hooks/fleet-verity"
install -m 644 files/initramfs-fleet.conf "${ROOTFS_DIR}/etc/initramfs-tools/conf.d/fleet.conf"
install -m 644 files/initramfs-modules "${ROOTFS_DIR}/etc/initramfs-tools/modules"
install -m 755 files/fleet-data-hook "${ROOTFS_DIR}/etc/initramfs-tools/hooks/fleet-data"
install -m 755 files/fleet-data-luks "${ROOTFS_DIR}/usr/sbin/fleet-data-luks"
install -d "${ROOTFS_DIR}/etc/ssh/sshd_config.d"
install -m 644 files/sshd-hostkeys.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/10-fleet-hostkeys.conf"
install -m 644 files/fleet-hostkeys.service "${ROOTFS_DIR}/etc/systemd/system/fleet-hostkeys.service"
install -d "${ROOTFS_DIR}/etc/systemd/journald.conf.d"
install -m 644 files/journald.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/10-fleet.conf"
