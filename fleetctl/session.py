"""What every command gets: the parsed options, a printer and (on first use) a client."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from fleetctl.client import Client
from fleetctl.output import Printer, Progress
from fleetctl.settings import resolve


@dataclass
class Session:
    args: argparse.Namespace
    printer: Printer
    progress: Progress = field(default_factory=Progress)
    _client: Client | None = None

    @property
    def client(self) -> Client:
        """The API client, from --url/--token, FLEET_URL/FLEET_TOKEN or the credentials file."""
        if self._client is None:
            self._client = Client(resolve(url=self.args.url, token=self.args.token))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
