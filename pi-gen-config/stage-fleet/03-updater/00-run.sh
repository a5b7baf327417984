#!/bin/bash -e
# The updater (the `device` extra of metrica-fleet) in a venv at /opt/metrica-fleet, its unit,
# and the trusted TUF root. FLEET_WHEELHOUSE holds aarch64 wheels of metrica-fleet[device]
# (fleet-image prepares it with `pip download --platform`); FLEET_ROOT_JSON is the root.json
# of the release repository; FLEET_UPDATER_UNIT is updater/systemd/fleet-updater.service.
# FLEET_DATA_PARTITION (luks or ext4, default ext4) is the build config's encrypt_data,
# recorded for fleet-image assemble (ADR 0076), whose --[no-]encrypt-data overrides it.
: "${FLEET_WHEELHOUSE:?set FLEET_WHEELHOUSE to a folder of aarch64 wheels}"
: "${FLEET_ROOT_JSON:?set FLEET_ROOT_JSON to the trusted TUF root.json}"
: "${FLEET_UPDATER_UNIT:?set FLEET_UPDATER_UNIT to updater/systemd/fleet-updater.service}"
case "${FLEET_DATA_PARTITION:=ext4}" in
luks | ext4) ;;
*)
	echo "FLEET_DATA_PARTITION must be luks or ext4, not '${FLEET_DATA_PARTITION}'" >&2
	exit 1
	;;
esac
rm -rf "${ROOTFS_DIR}/tmp/fleet-wheels"
install -d "${ROOTFS_DIR}/tmp/fleet-wheels"
cp "${FLEET_WHEELHOUSE}"/*.whl "${ROOTFS_DIR}/tmp/fleet-wheels/"
install -d -m 755 "${ROOTFS_DIR}/etc/metrica-fleet"
install -m 644 "${FLEET_ROOT_JSON}" "${ROOTFS_DIR}/etc/metrica-fleet/root.json"
install -m 644 "${FLEET_UPDATER_UNIT}" "${ROOTFS_DIR}/etc/systemd/system/fleet-updater.service"
install -d "${ROOTFS_DIR}/usr/share/metrica-fleet"
echo "${TARGET_HOSTNAME:-metrica}" > "${ROOTFS_DIR}/usr/share/metrica-fleet/hostname"
echo "${FLEET_DATA_PARTITION}" > "${ROOTFS_DIR}/usr/share/metrica-fleet/data-partition"
