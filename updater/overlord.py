"""The device side of the Overlord API (``fleetcore.wire``) over httpx.

httpx's own reading of the proxy environment is switched off (``trust_env=False``): the proxy
comes from :class:`updater.proxy.ProxyRules`, as for every other connection of the device, and
TLS trusts the system store (plus ``SSL_CERT_FILE``/``SSL_CERT_DIR``), as the chunk pipeline
and the TUF fetcher do.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.wire import (
    API_PREFIX,
    DesiredState,
    EventAck,
    EventBatch,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
)
from updater.errors import OverlordError
from updater.proxy import ProxyRules

_M = TypeVar("_M", bound=BaseModel)


class OverlordUnreachable(OverlordError):
    """No answer, or a 5xx: the device keeps running and queues what it has to say."""


class OverlordRejected(OverlordError):
    """A 4xx answer: retrying the same request will not help."""


@dataclass(frozen=True)
class Identity:
    device_id: str
    device_token: str

    def save(self, path: Path) -> None:
        """Kept on /data, readable by root only: the device's credential after enrolment."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"device_id": self.device_id, "device_token": self.device_token})
        atomic_write(path, data.encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Identity | None:
        try:
            raw = json.loads(path.read_bytes())
            return cls(device_id=str(raw["device_id"]), device_token=str(raw["device_token"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OverlordError(f"device identity {path} is unreadable: {err}") from err


def _proxy_headers(authorization: str | None) -> dict[str, str] | None:
    return {"Proxy-Authorization": authorization} if authorization else None


class OverlordClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        proxies: ProxyRules | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``proxies`` defaults to the process environment's."""
        proxy = (proxies or ProxyRules.resolve()).for_url(base_url)
        self.http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}{API_PREFIX}",
            timeout=timeout,
            transport=transport,
            proxy=httpx.Proxy(proxy.url, headers=_proxy_headers(proxy.authorization))
            if proxy
            else None,
            verify=ssl.create_default_context(),
            trust_env=False,
        )
        self.identity: Identity | None = None

    def close(self) -> None:
        self.http.close()

    def _request(
        self,
        method: str,
        url: str,
        body: BaseModel | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if self.identity is not None:
            headers["Authorization"] = f"Bearer {self.identity.device_token}"
        content = body.model_dump_json().encode() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.http.request(method, url, content=content, headers=headers)
        except httpx.TransportError as err:
            raise OverlordUnreachable(f"Overlord unreachable: {err}") from err
        if response.status_code >= 500:
            raise OverlordUnreachable(f"Overlord answered {response.status_code} to {url}")
        if response.status_code >= 400:
            raise OverlordRejected(
                f"Overlord refused {method} {url}: {response.status_code} {response.text[:200]}"
            )
        return response

    @staticmethod
    def _parse(model: type[_M], response: httpx.Response) -> _M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as err:
            raise OverlordError(f"unexpected answer from the Overlord: {err}") from err

    def register(self, request: RegisterRequest) -> Identity:
        response = self._request("POST", "/devices/register", request)
        answer = self._parse(RegisterResponse, response)
        self.identity = Identity(answer.device_id, answer.device_token)
        return self.identity

    def _device(self) -> str:
        if self.identity is None:
            raise OverlordError("this device is not enrolled yet")
        return f"/devices/{self.identity.device_id}"

    def desired_state(self, etag: str | None) -> tuple[DesiredState | None, str | None]:
        """The desired state, or ``None`` when it did not change since ``etag`` (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self._request("GET", f"{self._device()}/desired-state", headers=headers)
        if response.status_code == 304:
            return None, etag
        return self._parse(DesiredState, response), response.headers.get("ETag")

    def heartbeat(self, beat: Heartbeat) -> None:
        self._request("POST", f"{self._device()}/heartbeat", beat)

    def send_events(self, batch: EventBatch) -> EventAck:
        return self._parse(EventAck, self._request("POST", f"{self._device()}/events", batch))
