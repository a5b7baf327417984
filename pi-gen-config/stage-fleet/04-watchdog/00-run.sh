#!/bin/bash -e
# systemd pets the hardware watchdog (bcm2835_wdt on a Pi, i6300esb under QEMU): a hang during a
# tryboot trial resets the board into the committed slot.
install -d "${ROOTFS_DIR}/etc/systemd/system.conf.d"
install -m 644 files/watchdog.conf "${ROOTFS_DIR}/etc/systemd/system.conf.d/10-fleet-watchdog.conf"
install -d "${ROOTFS_DIR}/etc/modules-load.d"
echo bcm2835_wdt > "${ROOTFS_DIR}/etc/modules-load.d/fleet-watchdog.conf"
