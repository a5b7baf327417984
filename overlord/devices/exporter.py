"""Which node_exporter address a device may have Prometheus scrape.

A heartbeat names ``host:port`` and the Overlord's service discovery hands it to Prometheus,
so without a check any device could have Prometheus send requests to any host and port the
ops stack can reach. A reported address is kept only when its host is the address the device
connects from (as the Overlord sees it, after the trusted-proxy handling) or lies in one of
the operator's ``OVERLORD_EXPORTER_NETWORKS``, and its port is in ``EXPORTER_PORTS``.
Otherwise the heartbeat is stored without it and a warning names the device once per worker.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from fleetcore.wire import Heartbeat

EXPORTER_PORTS = range(1024, 65536)
_WARNED_MAX = 4096

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExporterDecision:
    """The address to export (normalised), or why the reported one is not exported."""

    target: str | None
    refusal: str | None = None


def decide(
    reported: str, *, client_host: str | None, networks: Sequence[IPNetwork]
) -> ExporterDecision:
    """Pure rule: is ``reported`` (``host:port``) a target this device may name?"""
    host, _, port_text = reported.rpartition(":")
    if not port_text.isdigit() or int(port_text) not in EXPORTER_PORTS:
        return ExporterDecision(None, f"port outside {EXPORTER_PORTS.start}-65535")
    port = int(port_text)
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return ExporterDecision(None, "the host is not an IP address (a name cannot be checked)")
    if isinstance(address, IPv6Address) != bracketed:
        return ExporterDecision(None, "an IPv6 host is written in brackets, an IPv4 one is not")
    address = _unmapped(address)
    target = f"[{address}]:{port}" if isinstance(address, IPv6Address) else f"{address}:{port}"
    if any(address in network for network in networks):
        return ExporterDecision(target)
    if address == _client_address(client_host) and _routable(address):
        return ExporterDecision(target)
    return ExporterDecision(
        None, "the host is neither the device's own address nor in OVERLORD_EXPORTER_NETWORKS"
    )


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _client_address(client_host: str | None) -> IPAddress | None:
    try:
        return _unmapped(ipaddress.ip_address(client_host or ""))
    except ValueError:
        return None


def _routable(address: IPAddress) -> bool:
    """A device's own unicast address; not one that would point Prometheus at its own host
    (loopback, as seen behind a misconfigured proxy) or at no host in particular."""
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_reserved
    )


class ExporterScreen:
    """Applies :func:`decide` to heartbeats; one per worker (it remembers whom it warned)."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self._networks = tuple(networks)
        self._warned: OrderedDict[tuple[str, str, str | None], None] = OrderedDict()

    def screen(self, device_id: str, heartbeat: Heartbeat, *, client_host: str | None) -> Heartbeat:
        """The heartbeat as it is stored: with the checked exporter address, or none."""
        reported = heartbeat.node_exporter
        if reported is None:
            return heartbeat
        decision = decide(reported, client_host=client_host, networks=self._networks)
        if decision.target == reported:
            return heartbeat
        if decision.refusal is not None:
            self._warn(device_id, reported, client_host, decision.refusal)
        return heartbeat.model_copy(update={"node_exporter": decision.target})

    def _warn(self, device_id: str, reported: str, client_host: str | None, why: str) -> None:
        key = (device_id, reported, client_host)
        if key in self._warned:
            return
        if len(self._warned) >= _WARNED_MAX:
            self._warned.popitem(last=False)
        self._warned[key] = None
        # The reported address matched the wire pattern (letters, digits, . : [ ] -).
        log.warning(
            "device %s: node_exporter %s not exported (connected from %s): %s",
            device_id,
            reported,
            client_host or "an unknown address",
            why,
        )
