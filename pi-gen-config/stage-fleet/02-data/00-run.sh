#!/bin/bash -e
# First-boot growth of the data partition to the end of the card, and docker's data-root on /data.
install -d "${ROOTFS_DIR}/usr/lib/metrica-fleet"
install -m 755 files/grow-data "${ROOTFS_DIR}/usr/lib/metrica-fleet/grow-data"
install -m 644 files/fleet-grow-data.service "${ROOTFS_DIR}/etc/systemd/system/fleet-grow-data.service"
install -d "${ROOTFS_DIR}/etc/docker"
install -m 644 files/docker-daemon.json "${ROOTFS_DIR}/etc/docker/daemon.json"
