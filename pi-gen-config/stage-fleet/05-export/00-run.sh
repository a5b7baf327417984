#!/bin/bash -e
# Hand the finished rootfs to fleet-image: a tar with numeric owners, xattrs and capabilities,
# in pi-gen's deploy folder. `fleet-image build --backend pi-gen` unpacks it; by hand:
#   mkdir rootfs && tar -xpf metrica-fleet-rootfs.tar --xattrs -C rootfs
#   fleet-image assemble --rootfs rootfs --out out --version V
out="${DEPLOY_DIR:?}/${IMG_NAME:-metrica-fleet}-rootfs.tar"
install -d "${DEPLOY_DIR}"
tar -C "${ROOTFS_DIR}" --numeric-owner --xattrs --xattrs-include='*' --acls \
	--one-file-system --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
	--exclude='./run/*' --exclude='./tmp/*' -cf "${out}.tmp" .
mv "${out}.tmp" "${out}"
echo "fleet rootfs exported to ${out}"
