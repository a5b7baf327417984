from __future__ import annotations

import socket

from updater.notify import Notifier, watchdog_interval


def test_messages_reach_the_notify_socket(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier(str(path))
        notifier.ready()
        notifier.watchdog()
        notifier.status("idle")
        assert [sock.recv(100) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STATUS=idle"]


def test_abstract_socket(tmp_path):
    name = f"fleet-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        Notifier("@" + name).ready()
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_nothing_happens(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().ready()
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 60.0
