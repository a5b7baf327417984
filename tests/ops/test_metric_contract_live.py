"""Every Overlord metric the alert rules and dashboards use is exposed by a running Overlord."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fleetcore.net import free_port
from tests.ops.contract import documented_metrics, exposed_metrics, used_metrics


def test_rules_and_dashboards_match_a_live_overlord(tmp_path):
    port = free_port()
    env = os.environ | {
        "OVERLORD_DATABASE_URL": f"sqlite:///{tmp_path / 'overlord.db'}",
        "OVERLORD_REPO_DIR": str(tmp_path / "repo"),
        "OVERLORD_KEYS_DIR": str(tmp_path / "keys"),
    }
    overlord = Path(sys.executable).with_name("overlord")
    assert overlord.exists(), (
        f"the overlord console script is not installed beside {sys.executable}"
    )
    proc = subprocess.Popen(
        [overlord, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "overlord serve did not answer /health in 60 s"
            time.sleep(0.2)
        exposed = exposed_metrics(httpx.get(f"{base}/metrics", timeout=5).text)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    documented = documented_metrics()
    assert set(documented) <= set(exposed)

    def exposed_sample(name: str) -> bool:
        if name in exposed:
            return True
        return any(
            exposed.get(name.removesuffix(suffix)) == "histogram"
            for suffix in ("_bucket", "_sum", "_count")
            if name.endswith(suffix)
        )

    missing = sorted(n for n in used_metrics() if n.startswith("fleet_") and not exposed_sample(n))
    assert not missing, f"used by rules or dashboards but not exposed: {sorted(missing)}"
