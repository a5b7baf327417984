"""The guest reaches one loopback service on the host, and keeps running when it is down."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
from harness.board import SimulatedPi
from harness.qemu import End, MachineSpec, loopback_service
from harness.testdisk import set_plan

pytestmark = pytest.mark.qemu

PLAN = "healthy net-up fetch hello.txt poweroff"


@pytest.fixture
def service(tmp_path):
    """A static HTTP server on an ephemeral loopback port, standing in for the Overlord."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello-from-the-host")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_guest_fetches_from_the_host_service_and_survives_its_outage(
    pi: SimulatedPi, card, service
):
    pi.spec = MachineSpec(extra_args=loopback_service(service.server_address[1]))
    set_plan(card, "boot_a", normal=PLAN, tryboot="poweroff")

    up = pi.boot()
    service.shutdown()
    service.server_close()
    down = pi.boot()

    assert "guest: fetched: hello-from-the-host" in pi.console(up)
    assert "guest: fetch failed: hello.txt" in pi.console(down)
    assert (up.end, down.end) == (End.POWEROFF, End.POWEROFF)
    assert down.healthy
