#!/bin/bash -e
# The safe-mode stack at /opt/metrica-fleet/safe-mode, where the role manager starts it from
# (updater.cli.SAFE_MODE_BUNDLE). FLEET_SAFE_MODE is the bundle fleet-image prepared on the
# build host (image/safemode.py): safe-mode/ with its busybox image archive in images/, so
# safe mode starts with no network. Root-owned and read-only like the rest of the image.
: "${FLEET_SAFE_MODE:?set FLEET_SAFE_MODE to the safe-mode bundle fleet-image prepared}"
test -f "${FLEET_SAFE_MODE}/role.yaml"
dest="${ROOTFS_DIR}/opt/metrica-fleet/safe-mode"
rm -rf "${dest}"
install -d -m 755 "${dest}"
cp -R "${FLEET_SAFE_MODE}/." "${dest}/"
chown -R 0:0 "${dest}"
find "${dest}" -type d -exec chmod 755 {} +
find "${dest}" -type f -exec chmod 644 {} +
