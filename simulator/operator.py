"""The operator's side of the Overlord API, as the demo and the benchmarks use it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from fleetcore.wire import API_PREFIX
from overlord.rollouts.schemas import RolloutCreate, RolloutPublic
from simulator.errors import OverlordRefused

PAGE = 500


class OperatorClient:
    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.Client(
            base_url=f"{base_url}{API_PREFIX}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise OverlordRefused(f"{method} {path}: {err}") from err
        if response.status_code >= 400:
            raise OverlordRefused(
                f"{method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def create_rollout(self, spec: RolloutCreate) -> RolloutPublic:
        body = spec.model_dump(mode="json")
        return RolloutPublic.model_validate(self._call("POST", "/rollouts", json=body))

    def rollout(self, rollout_id: int) -> RolloutPublic:
        return RolloutPublic.model_validate(self._call("GET", f"/rollouts/{rollout_id}"))

    def versions(self) -> Counter[str]:
        """How many enrolled devices report each image version."""
        counts: Counter[str] = Counter()
        offset = 0
        while True:
            page = self._call("GET", "/devices", params={"limit": PAGE, "offset": offset})
            counts.update(item["image_version"] for item in page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return counts
