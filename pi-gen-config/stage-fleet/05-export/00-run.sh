#!/bin/bash -e
# Hand the finished rootfs to fleet-image: a tar with numeric owners, xattrs and capabilities,
# in pi-gen's deploy folder. `fleet-image build --backend pi-gen` unpacks it; by hand:
#   mkdir rootfs && tar -xpf metrica-fleet-rootfs.tar --xattrs -C rootfs
#   fleet-image assemble --rootfs rootfs --out out --version V
# pi-gen's export-image stage does not run (stage-fleet has no EXPORT_IMAGE file), so the
# parts of its 05-finalise that matter for a rootfs happen here.
rm -f "${ROOTFS_DIR}"/etc/{passwd,group,shadow,gshadow,subuid,subgid}- \
	"${ROOTFS_DIR}"/var/cache/debconf/*-old "${ROOTFS_DIR}"/var/lib/dpkg/*-old \
	"${ROOTFS_DIR}/usr/bin/qemu-arm-static" "${ROOTFS_DIR}/usr/bin/qemu-aarch64-static"
ln -nsf /proc/mounts "${ROOTFS_DIR}/etc/mtab"
# NetworkManager cannot rewrite /etc/resolv.conf on a read-only root: use the copy it keeps in
# /run. (Debootstrap builds use systemd-resolved's stub instead.)
if [ -x "${ROOTFS_DIR}/usr/sbin/NetworkManager" ]; then
	ln -nsf ../run/NetworkManager/resolv.conf "${ROOTFS_DIR}/etc/resolv.conf"
fi
out="${DEPLOY_DIR:?}/${IMG_NAME:-metrica-fleet}-rootfs.tar"
install -d "${DEPLOY_DIR}"
# pi-gen's on_chroot leaves /proc, /sys, /dev, /dev/pts, /run and /tmp mounted until the stage
# ends; tar would read the mounted /sys (and fail: "file changed as we read it"). A plain
# (non-recursive) bind mount of the rootfs shows the empty mount point folders instead.
view="$(mktemp -d)"
mount --bind "${ROOTFS_DIR}" "${view}"
trap 'umount "${view}" && rmdir "${view}"' EXIT
tar -C "${view}" --numeric-owner --xattrs --xattrs-include='*' --acls -cf "${out}.tmp" .
mv "${out}.tmp" "${out}"
echo "fleet rootfs exported to ${out}"
