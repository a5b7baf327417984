"""One proxy decision for every connection the device opens.

The Overlord client (httpx), the TUF metadata fetcher (urllib3) and the chunk pipeline (raw
sockets) each ask :meth:`ProxyRules.for_url` and connect the way it says, so a proxy set once
applies to all of them and a host in the bypass list is reached directly by all of them.

Precedence, highest first: the ``proxy:`` section of the updater configuration (``url`` for
http:// and https:// alike, ``no_proxy`` replacing the environment's list), then the standard
environment variables ``http_proxy`` / ``HTTP_PROXY``, ``https_proxy`` / ``HTTPS_PROXY``,
``all_proxy`` / ``ALL_PROXY`` and ``no_proxy`` / ``NO_PROXY`` (the lower-case spelling wins,
as curl and python-requests do). Only plain http:// proxies are supported: https:// URLs go
through them with CONNECT, so TLS still ends at the real server.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from fleetcore import redact
from updater.errors import ConfigError


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where to connect, and the credentials it wants, if any."""

    url: str
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, value: str) -> Proxy:
        """``http://[user:password@]host[:port]``; a bare ``host:port`` means http://."""
        text = value.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            parts = urlsplit(text)
            port = parts.port or 80
        except ValueError as err:
            userinfo = text.split("://", 1)[-1].rpartition("@")[0]
            message = redact.secrets(f"invalid proxy URL {value!r}: {err}", userinfo)
            raise ConfigError(message) from err
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"unsupported proxy {redact.url(value)!r}",
                hint="only http://host:port proxies are supported (https:// goes through CONNECT)",
            )
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            credentials = base64.b64encode(pair.encode()).decode()
            authorization = f"Basic {credentials}"
            # As written in the URL and decoded, and as the header carries it.
            redact.SECRETS.add(parts.password, unquote(parts.password or ""), credentials)
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        return cls(url=f"http://{netloc}:{port}", host=host, port=port, authorization=authorization)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    for key in (name.lower(), name.upper()):
        value = environ.get(key, "").strip()
        if value:
            return value
    return None


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class ProxyRules:
    """Which proxy, if any, a URL goes through."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        no_proxy: tuple[str, ...] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ProxyRules:
        """The configured ``url``/``no_proxy`` where given, the environment otherwise."""
        env = os.environ if environ is None else environ
        bypass = no_proxy if no_proxy is not None else _split_list(_env(env, "no_proxy") or "")
        if url is not None:
            proxy = Proxy.parse(url)
            return cls(http=proxy, https=proxy, no_proxy=bypass)
        fallback = _env(env, "all_proxy")
        http, https = _env(env, "http_proxy") or fallback, _env(env, "https_proxy") or fallback
        return cls(
            http=Proxy.parse(http) if http else None,
            https=Proxy.parse(https) if https else None,
            no_proxy=bypass,
        )

    def for_url(self, url: str) -> Proxy | None:
        parts = urlsplit(url)
        proxy = {"http": self.http, "https": self.https}.get(parts.scheme)
        if proxy is None or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if any(_bypassed(entry, parts.hostname, port) for entry in self.no_proxy):
            return None
        return proxy


def _bypassed(entry: str, host: str, port: int) -> bool:
    """curl's ``no_proxy`` rules: ``*``, a host or domain (and its subdomains), an IP
    address or CIDR network, each optionally with ``:port``."""
    if entry == "*":
        return True
    pattern = entry
    if pattern.startswith("[") and "]" in pattern:  # [v6]:port
        address, _, rest = pattern[1:].partition("]")
        pattern, wanted_port = address, rest.lstrip(":")
    elif pattern.count(":") == 1:
        pattern, wanted_port = pattern.split(":")
    else:
        wanted_port = ""
    if wanted_port and wanted_port != str(port):
        return False
    try:
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        domain = pattern.lower().lstrip("*").lstrip(".")
        name = host.lower().rstrip(".")
        return bool(domain) and (name == domain or name.endswith(f".{domain}"))
    try:
        return ipaddress.ip_address(host) in network
    except ValueError:
        return False
