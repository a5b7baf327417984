"""The pipelined HTTP/1.1 client against a scripted raw socket server."""

from __future__ import annotations

import socket
import threading

import pytest

from updater.pipeline import BodyTooLong, PipelinedConnection, ProtocolError
from updater.proxy import Proxy


def serve(answers: list[bytes]) -> tuple[str, list[bytes]]:
    """Accept one connection, read until all requests arrived, send the scripted bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while data.count(b"\r\n\r\n") < len(answers):
                part = conn.recv(65536)
                if not part:
                    break
                data += part
            received.append(data)
            conn.sendall(b"".join(answers))
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    port = listener.getsockname()[1]
    return f"http://127.0.0.1:{port}/tuf", received


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_pipelined_answers_in_order_with_both_framings():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    url, received = serve(
        [ok(b"first"), chunked, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]
    )
    conn = PipelinedConnection(url, timeout=5)
    answers = list(conn.get_many(["a", "b", "c"], [100, 100, 100]))
    assert answers == [(200, b"first"), (200, b"abcde"), (404, b"")]
    requests = received[0].split(b"\r\n\r\n")
    assert requests[0].startswith(b"GET /tuf/a HTTP/1.1\r\nHost: 127.0.0.1:")
    conn.close()


def test_connection_close_mid_batch_is_a_protocol_error_after_the_answer():
    url, _ = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", b""])
    conn = PipelinedConnection(url, timeout=5)
    answers = conn.get_many(["a", "b"], [10, 10])
    assert next(answers) == (200, b"hi")
    with pytest.raises(ProtocolError, match="closed"):
        next(answers)


def test_body_longer_than_the_cap_is_refused():
    url, _ = serve([ok(b"x" * 50)])
    with pytest.raises(BodyTooLong):
        list(PipelinedConnection(url, timeout=5).get_many(["a"], [10]))


def test_garbage_is_not_http():
    url, _ = serve([b"SSH-2.0-OpenSSH\r\n\r\n"])
    with pytest.raises(ProtocolError, match="status line"):
        list(PipelinedConnection(url, timeout=5).get_many(["a"], [10]))


def test_truncated_body_is_a_protocol_error():
    url, _ = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"])
    with pytest.raises(ProtocolError, match="mid-body"):
        list(PipelinedConnection(url, timeout=5).get_many(["a"], [100]))


def test_through_a_proxy_requests_are_in_absolute_form_with_credentials():
    proxy_url, received = serve([ok(b"one"), ok(b"two")])
    proxy = Proxy.parse(proxy_url.removesuffix("/tuf").replace("http://", "http://u:pw@"))
    conn = PipelinedConnection("http://repo.example:8080/tuf", timeout=5, proxy=proxy)
    assert list(conn.get_many(["a", "b"], [10, 10])) == [(200, b"one"), (200, b"two")]
    first, second = received[0].split(b"\r\n\r\n")[:2]
    assert first.startswith(b"GET http://repo.example:8080/tuf/a HTTP/1.1\r\n")
    assert b"\r\nHost: repo.example:8080\r\n" in first
    assert b"\r\nProxy-Authorization: Basic dTpwdw==" in first
    assert second.startswith(b"GET http://repo.example:8080/tuf/b HTTP/1.1\r\n")
    conn.close()


def test_a_refused_connect_is_a_protocol_error_naming_the_proxy():
    proxy_url, received = serve([b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"])
    proxy = Proxy.parse(proxy_url.removesuffix("/tuf"))
    conn = PipelinedConnection("https://repo.example/tuf", timeout=5, proxy=proxy)
    with pytest.raises(ProtocolError, match=r"refused CONNECT repo\.example:443: HTTP 407"):
        list(conn.get_many(["a"], [10]))
    assert received[0].startswith(
        b"CONNECT repo.example:443 HTTP/1.1\r\nHost: repo.example:443\r\n"
    )
