"""The agent's remote shell (ADR 0074, shell slice) on the device's Python, against a real
WebSocket peer on loopback standing in for the Overlord: a real ``/bin/sh`` in a real PTY
runs what the peer types, takes the peer's terminal size, reports its exit status; the
``fleet.yaml`` veto refuses it; the device's idle limit, the Overlord's close and the agent's
stop each end it and hang the shell up."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from tests.updater.wspieces import Pieces
from updater.remote.join import Join
from updater.remote.policy import refusal
from updater.remote.terminal import LOGIN_SIGNALS, Pty, get_size

SESSION = DesiredRemote(session="t" * 22, kind="shell")
SHELL = ["/bin/sh"]
ALLOWED = RemoteAccess(shell=True)


class Peer:
    """The Overlord's side of one session: accepts the upgrade, then the test drives it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ws = WSConnection(ConnectionType.SERVER)
        self.conn: socket.socket | None = None
        self.received: list[str | bytes] = []
        self._pieces = Pieces()
        self.closed = False
        self._accepted = threading.Thread(target=self._accept, daemon=True)
        self._accepted.start()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(30)
        self.conn = conn
        while not self.received:
            self._read()

    def url(self) -> httpx.URL:
        return httpx.URL(f"http://127.0.0.1:{self.port}/api/v1/devices/d1/remote/{SESSION.session}")

    def _read(self) -> None:
        assert self.conn is not None
        data = self.conn.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, Request):
                self.conn.sendall(self.ws.send(AcceptConnection()))
            elif isinstance(event, TextMessage | BytesMessage):
                message = self._pieces.add(event)
                if message is not None:
                    self.received.append(message)
            elif isinstance(event, CloseConnection):
                self.closed = True
        if not data:
            self.closed = True

    def hello(self) -> dict[str, object]:
        self._accepted.join(timeout=30)
        message: dict[str, object] = json.loads(self.received.pop(0))
        return message

    def send(self, message: str | bytes) -> None:
        assert self.conn is not None
        event = BytesMessage(data=message) if isinstance(message, bytes) else TextMessage(message)
        self.conn.sendall(self.ws.send(event))

    def output(self) -> bytes:
        return b"".join(m for m in self.received if isinstance(m, bytes))

    def controls(self) -> list[dict[str, object]]:
        return [json.loads(m) for m in self.received if isinstance(m, str)]

    def until(self, done: object, what: str) -> None:
        """Reads until ``done()`` is true or the connection closes."""
        while not done() and not self.closed:  # type: ignore[operator]
            self._read()
        assert done(), f"the peer closed before {what}: {self.received!r}"  # type: ignore[operator]


def _join(peer: Peer, access: RemoteAccess = ALLOWED, command: list[str] = SHELL) -> Join:
    join = Join(
        SESSION,
        url=peer.url(),
        headers={"Authorization": "Bearer device-token"},
        access=access,
        version="1.0.0",
        shell_command=command,
    )
    join.start()
    assert peer.hello()["type"] == "hello"
    return join


def _ended(join: Join) -> None:
    for _ in range(600):
        if not join.running:
            return
        time.sleep(0.05)
    pytest.fail("the session thread did not end")


def test_the_shell_runs_what_is_typed_at_the_peers_size_and_reports_its_exit():
    peer = Peer()
    join = _join(peer)
    peer.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
    peer.send(b"stty size; echo shell-$((6*7)); tty; exit 3\n")
    peer.until(lambda: any(c.get("type") == "close" for c in peer.controls()), "the close")
    output = peer.output().decode()
    assert "43 132" in output
    assert "shell-42" in output
    assert "/dev/pts/" in output
    assert peer.controls() == [
        {"type": "exit", "status": 3},
        {"type": "close", "reason": "the shell exited with status 3"},
    ]
    _ended(join)


def test_ctrl_c_interrupts_the_foreground_job_through_the_controlling_terminal():
    peer = Peer()
    join = _join(peer)
    peer.send(b"sleep 60; echo after-$((1+1))\n")
    # ^C before sleep runs would only clear the line: wait until the line has reached the
    # terminal (its echo, however slow the relay is under load), then give bash time to start it.
    peer.until(lambda: b"after-$((1+1))" in peer.output(), "the echo of the typed line")
    time.sleep(1.0)
    peer.send(b"\x03")
    peer.send(b"echo interrupted-$((2+2)); exit\n")
    peer.until(lambda: b"interrupted-4" in peer.output(), "the echo after ^C")
    assert b"after-2" not in peer.output()
    peer.until(lambda: any(c.get("type") == "close" for c in peer.controls()), "the close")
    _ended(join)


def test_a_large_paste_is_taken_whole_while_the_shell_echoes_it():
    peer = Peer()
    join = _join(peer)
    peer.send(b"stty -echo; cat > /dev/null; echo pasted\n")
    for _ in range(64):  # 256 KiB: four times the backlog bound and the PTY's buffers
        peer.send(b"y" * 4095 + b"\n")
    peer.send(b"\x04")
    peer.until(lambda: b"pasted" in peer.output(), "the paste to be read")
    peer.send(b"exit\n")
    peer.until(lambda: any(c.get("type") == "close" for c in peer.controls()), "the close")
    _ended(join)


def test_the_veto_refuses_a_shell():
    assert refusal("shell", RemoteAccess()) is not None
    assert refusal("shell", ALLOWED) is None
    peer = Peer()
    join = _join(peer, RemoteAccess())
    peer.until(lambda: peer.controls(), "the refusal")
    (close,) = peer.controls()
    assert close["type"] == "close"
    assert "fleet.yaml forbids shell" in str(close["reason"])
    _ended(join)


def _shell_pid(peer: Peer) -> int:
    peer.send(b"echo pid=$$=\n")  # the echoed command line shows "$$", the output digits
    peer.until(lambda: re.search(rb"pid=(\d+)=", peer.output()), "the shell's pid")
    found = re.search(rb"pid=(\d+)=", peer.output())
    assert found is not None
    return int(found.group(1))


def _gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_overlords_close_hangs_the_shell_up():
    peer = Peer()
    join = _join(peer)
    pid = _shell_pid(peer)
    peer.send(json.dumps({"type": "close", "reason": "seen enough"}))
    _ended(join)
    assert _gone(pid)


def test_the_agents_stop_ends_the_session_with_its_reason():
    peer = Peer()
    join = _join(peer)
    pid = _shell_pid(peer)
    join.stop()
    assert _gone(pid)
    peer.until(lambda: peer.controls(), "the close")
    assert peer.controls() == [{"type": "close", "reason": "the agent stopped"}]


def test_the_devices_idle_limit_ends_the_shell():
    peer = Peer()
    join = _join(peer, RemoteAccess(shell=True, shell_idle_s=10))
    started = time.monotonic()
    peer.until(lambda: peer.controls(), "the idle end")
    assert time.monotonic() - started >= 9
    assert peer.controls() == [{"type": "close", "reason": "idle for 10 s (the device's limit)"}]
    _ended(join)


def test_what_the_shell_wrote_before_it_exited_is_sent_before_the_exit(
    monkeypatch: pytest.MonkeyPatch,
):
    # The race CI found: the session's thread was not scheduled while the shell printed and
    # exited, so its next wait saw nothing ready and the exit check came first. Each wait
    # here lets the shell finish, then reports nothing ready, as a preempted thread sees it.
    real_select = select.select

    def preempted(
        readers: list[int], writers: list[int], errors: list[int], wait: float
    ) -> tuple[list[int], list[int], list[int]]:
        time.sleep(0.3)
        real_select(readers, writers, errors, wait)
        return [], [], []

    monkeypatch.setattr(select, "select", preempted)
    peer = Peer()
    join = _join(peer, command=["/bin/sh", "-c", "echo last-$((6*7)); exit 5"])
    peer.until(lambda: any(c.get("type") == "close" for c in peer.controls()), "the close")
    assert b"last-42" in peer.output()
    assert peer.controls()[0] == {"type": "exit", "status": 5}
    _ended(join)


def test_a_missing_shell_is_a_reason_not_a_crash():
    peer = Peer()
    join = _join(peer, command=["/nonexistent/shell"])
    peer.until(lambda: peer.controls(), "the close")
    (close,) = peer.controls()
    assert str(close["reason"]).startswith("cannot start the shell:")
    _ended(join)


def _exit_status(term: Pty) -> int | None:
    """The shell's exit status, waiting up to 10 s for it to exit."""
    for _ in range(200):
        if term.exit_status() is not None:
            break
        time.sleep(0.05)
    return term.exit_status()


def test_the_shell_starts_with_every_login_signal_at_its_default_whatever_the_agent_ignores(
    tmp_path: Path,
):
    """An agent started by ``nohup`` or as a background job ignores SIGHUP or SIGINT; ignored
    signals are inherited, so without a reset the shell would survive its hang-up and its
    jobs would ignore Ctrl-C."""
    status = tmp_path / "status"
    ignored = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE)
    before = {number: signal.signal(number, signal.SIG_IGN) for number in ignored}
    try:
        term = Pty(["/bin/sh", "-c", f"cat /proc/self/status > {status}"])
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    try:
        assert _exit_status(term) == 0
    finally:
        term.close()
    fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
    mask = int(fields["SigIgn"], 16)
    assert [n for n in LOGIN_SIGNALS if mask & (1 << (n - 1))] == []


def test_the_pty_takes_its_initial_size_and_a_clean_environment(tmp_path: Path):
    term = Pty(["/bin/sh", "-c", f"env > {tmp_path / 'env'}; stty size > {tmp_path / 'size'}"])
    try:
        assert get_size(term.fd) == (80, 24)
        assert _exit_status(term) == 0
    finally:
        term.close()
    assert (tmp_path / "size").read_text().split() == ["24", "80"]
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["TERM"] == "xterm-256color"
    assert "FAKE_JOURNAL_ARGS" not in env and "PYTHONPATH" not in env
