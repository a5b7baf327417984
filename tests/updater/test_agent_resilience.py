"""The agent keeps running and heartbeating whatever happens below it, and says so."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore.wire import DesiredState, UpdateState
from tests.updater.agents import make_agent, setup_device
from tests.updater.test_hostile_transfer import canned
from updater.engine import Engine
from updater.errors import OverlordClientError
from updater.overlord import Identity, OverlordClient, OverlordUnreachable


def kinds(server):
    return [e["kind"] for e in server.events]


def test_enrolment_sends_the_board_serial(device, server):
    tree = device.roots.device_tree
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "serial-number").write_bytes(b"10000000a1b2c3d4\0")  # as the firmware writes it
    setup_device(device, server)
    make_agent(device).cycle()
    assert server.registrations[0].serial == "10000000a1b2c3d4"


@pytest.mark.parametrize("error", [MemoryError(), RecursionError("deep"), OSError(28, "No space")])
def test_an_unexpected_failure_in_the_update_still_heartbeats_and_is_reported(
    device, server, monkeypatch, error
):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    beats = len(server.heartbeats)

    def explode(self):
        raise error

    monkeypatch.setattr(Engine, "resume", explode)
    agent.cycle()
    assert len(server.heartbeats) == beats + 1
    assert "agent-error" in kinds(server)
    reported = [e for e in server.events if e["kind"] == "agent-error"][-1]
    assert type(error).__name__ in reported["reason"]


def test_an_install_step_that_keeps_dying_is_given_up_and_reported(device, server, monkeypatch):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()

    def dies(self, state):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Engine, "_download", dies)
    server.set_desired("2.0.0")
    for _ in range(5):
        agent.cycle()
    state = agent.engine.store.load()
    assert state.state is UpdateState.FAILED
    assert state.last_failure is not None
    assert state.last_failure.startswith("given up after 3 attempts that ended unexpectedly")
    assert "RecursionError" in state.last_failure
    assert "install-failed" in kinds(server)


def test_a_corrupt_state_file_is_set_aside_reported_and_the_agent_goes_on(device, server):
    setup_device(device, server)
    agent = make_agent(device)
    agent.cycle()
    device.roots.state_file.write_bytes(b'{"state": "downloading", "state": 7')
    agent.cycle()
    agent.report_quarantine()
    aside = list(device.roots.state_file.parent.glob("state.json.unreadable-*"))
    assert len(aside) == 1
    assert agent.engine.store.load().state is UpdateState.IDLE
    agent.cycle()
    assert any("state file unreadable" in (e.get("reason") or "") for e in server.events)


def test_a_newer_major_state_file_is_set_aside_too(device):
    device.roots.state_file.parent.mkdir(parents=True, exist_ok=True)
    device.roots.state_file.write_text(json.dumps({"format": "2.0", "state": "idle"}))
    store = device.engine().store
    assert store.load().state is UpdateState.IDLE
    assert store.quarantined is not None and "format 2.0" in store.quarantined[1]


def test_unknown_fields_from_a_newer_minor_are_read(device):
    device.roots.state_file.parent.mkdir(parents=True, exist_ok=True)
    device.roots.state_file.write_text(
        json.dumps({"format": "1.4", "state": "committed", "later_field": [1]})
    )
    assert device.engine().store.load().state is UpdateState.COMMITTED


def client_answering(handler) -> OverlordClient:
    client = OverlordClient(
        "http://overlord.test", timeout=2, transport=httpx.MockTransport(handler)
    )
    client.identity = Identity("dev-1", "s3cret-device-token")
    return client


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(200, headers={"Content-Length": "209715200"}),
            OverlordUnreachable,
            "refused",
        ),
        (
            httpx.Response(200, content=iter([b" " * 65536] * 40)),
            OverlordUnreachable,
            "longer than",
        ),
        (httpx.Response(200, content=b"NaN"), OverlordClientError, "not a JSON number"),
        (httpx.Response(200, content=b"[" * 100_000), OverlordClientError, "nests deeper"),
        (httpx.Response(200, content=b'{"os": null, "os": {}}'), OverlordClientError, "duplicate"),
        (
            httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"x"),
            OverlordUnreachable,
            "encoding",
        ),
        (
            httpx.Response(200, content=b'{"poll_interval_s": "s3cret-device-token"}'),
            OverlordClientError,
            "poll_interval_s",
        ),
    ],
    ids=["announced-huge", "streamed-huge", "nan", "deep", "duplicate", "gzip", "invalid"],
)
def test_hostile_overlord_answers_are_one_error(response, error, message):
    def answer(request):
        return httpx.Response(
            response.status_code, headers=response.headers, stream=response.stream
        )

    client = client_answering(answer)
    with pytest.raises(error, match=message) as info:
        client.desired_state(None)
    assert "s3cret-device-token" not in str(info.value)


def test_a_refusal_that_quotes_the_token_is_redacted(caplog):
    def echo(request):
        text = f"bad token {request.headers['Authorization']}"
        return httpx.Response(403, stream=httpx.ByteStream(text.encode()))

    client = client_answering(echo)
    with pytest.raises(OverlordClientError) as info:
        client.desired_state(None)
    assert "s3cret-device-token" not in str(info.value)
    assert "***" in str(info.value)


def test_a_good_answer_still_parses():
    body = DesiredState(poll_interval_s=60).model_dump_json().encode()
    client = client_answering(lambda request: httpx.Response(200, stream=httpx.ByteStream(body)))
    desired, _ = client.desired_state(None)
    assert desired is not None and desired.poll_interval_s == 60


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.from_regex(rb'\{"(os|roles|poll_interval_s)": .{0,40}\}'))
def test_any_answer_is_a_model_or_one_overlord_error(data):
    client = client_answering(lambda request: httpx.Response(200, stream=httpx.ByteStream(data)))
    with contextlib.suppress(OverlordClientError):
        client.desired_state(None)


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n"
HEAD += b"X-Padding: trickled\r\n" * 8 + b"\r\n"
TRICKLED = HEAD + b"{" + b" " * 58 + b"}"


@pytest.mark.timeout(90)  # a guard: the old client waited for a trickled head at any pace
@pytest.mark.parametrize(
    ("at_once", "whole"), [(len(HEAD), len(TRICKLED)), (0, len(HEAD))], ids=["body", "head"]
)
def test_an_overlord_that_trickles_its_answer_is_cut_off_by_the_deadline(at_once, whole):
    """A real server sends the answer a byte every 0.2 s, each well within the 0.5 s
    per-read timeout. The deadline (four timeouts) bounds the whole answer: the status line
    and headers too, which httpx reads before the client sees a response."""
    sent: list[int] = []
    with canned(TRICKLED, trickle=0.2, at_once=at_once, sent=sent) as url:
        client = OverlordClient(url, timeout=0.5)
        client.identity = Identity("dev-1", "s3cret-device-token")
        with pytest.raises(OverlordUnreachable, match="answer not complete within 2 s"):
            client.desired_state(None)
        client.close()
    assert sent[0] < whole  # given up while it trickled, not once it was whole
