#!/bin/bash -e
# Offline install from the wheelhouse: no network needed here, and it pins what ships. The
# build host's pip settings (PIP_* variables reach the chroot) do not apply.
unset "${!PIP_@}"
python3 -m venv /opt/metrica-fleet
/opt/metrica-fleet/bin/python -m pip install --quiet --no-index --no-compile \
	--find-links /tmp/fleet-wheels 'metrica-fleet[device]'
/opt/metrica-fleet/bin/python -m pip uninstall --quiet --yes pip setuptools
# Only the device's commands in bin: the wheel declares every console script of the project
# (fleet-image, fleet-sign, overlord need extras the device lacks) and dependencies add their
# own (httpx without its cli extra); none of them can run here.
/opt/metrica-fleet/bin/python - fleet-updater <<'PY'
import sys
from importlib.metadata import distributions
from pathlib import Path

keep = set(sys.argv[1:])
bin_dir = Path(sys.prefix) / "bin"
for dist in distributions():
    for entry in dist.entry_points.select(group="console_scripts"):
        if entry.name not in keep:
            (bin_dir / entry.name).unlink(missing_ok=True)
PY
# Byte-code now, since the root is read-only on the device; hash-checked .pyc are reproducible.
/opt/metrica-fleet/bin/python -m compileall -q -j 0 --invalidation-mode checked-hash \
	/opt/metrica-fleet/lib
rm -rf /tmp/fleet-wheels /root/.cache/pip
systemctl enable fleet-updater.service
