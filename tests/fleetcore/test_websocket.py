"""The shared WebSocket client (fleetcore/websocket.py) answers the server's keepalive pings:
uvicorn pings every 20 s and closes a connection whose pong does not come within 20 s, which
ended every remote session older than about 40 s. The server here is ``wsproto`` itself on a
loopback socket, pinging before its first message."""

from __future__ import annotations

import socket
import threading

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage

from fleetcore.websocket import WebSocket


def _server(listener: socket.socket, pongs: list[bytes]) -> None:
    conn, _addr = listener.accept()
    ws = WSConnection(ConnectionType.SERVER)
    with conn:
        while True:
            ws.receive_data(conn.recv(65536))
            if any(isinstance(event, Request) for event in ws.events()):
                break
        conn.sendall(ws.send(AcceptConnection()) + ws.send(Ping(payload=b"keepalive")))
        while not pongs:
            ws.receive_data(conn.recv(65536))
            pongs += [bytes(e.payload) for e in ws.events() if isinstance(e, Pong)]
        conn.sendall(ws.send(TextMessage(data="after the pong")))


def test_a_ping_is_answered_while_receiving():
    pongs: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server = threading.Thread(target=_server, args=(listener, pongs), daemon=True)
        server.start()
        client = WebSocket(f"http://127.0.0.1:{listener.getsockname()[1]}/ws", {})
        try:
            assert client.receive(10) == "after the pong"
        finally:
            client.close()
        server.join(timeout=10)
    assert pongs == [b"keepalive"]
