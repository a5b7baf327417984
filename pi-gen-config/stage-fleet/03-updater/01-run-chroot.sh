#!/bin/bash -e
# Offline install from the wheelhouse: no network needed here, and it pins what ships.
python3 -m venv /opt/metrica-fleet
/opt/metrica-fleet/bin/python -m pip install --quiet --no-index --no-compile \
	--find-links /tmp/fleet-wheels 'metrica-fleet[device]'
/opt/metrica-fleet/bin/python -m pip uninstall --quiet --yes pip setuptools
# Byte-code now, since the root is read-only on the device; hash-checked .pyc are reproducible.
/opt/metrica-fleet/bin/python -m compileall -q -j 0 --invalidation-mode checked-hash \
	/opt/metrica-fleet/lib
rm -rf /tmp/fleet-wheels /root/.cache/pip
systemctl enable fleet-updater.service
