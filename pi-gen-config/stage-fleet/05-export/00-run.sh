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
tar -C "${ROOTFS_DIR}" --numeric-owner --xattrs --xattrs-include='*' --acls \
	--one-file-system --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
	--exclude='./run/*' --exclude='./tmp/*' -cf "${out}.tmp" .
mv "${out}.tmp" "${out}"
echo "fleet rootfs exported to ${out}"
