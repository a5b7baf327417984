"""The TUF metadata and target fetcher, connecting the way :mod:`updater.proxy` decided.

python-tuf's own urllib3 fetcher reads the proxy environment by itself and knows nothing of
the updater configuration, so the device would have two proxy rules. This one gets its
proxy (or none) from :class:`updater.proxy.ProxyRules`, like the chunk pipeline and the
Overlord client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import urllib3
from tuf.api.exceptions import DownloadError, DownloadHTTPError, SlowRetrievalError
from tuf.ngclient import FetcherInterface

from signing.client import USER_AGENT
from updater import tls
from updater.pipeline import MIN_RATE
from updater.proxy import Proxy

_READ = 1 << 16


class ProxyAwareFetcher(FetcherInterface):
    def __init__(self, *, proxy: Proxy | None, timeout: float) -> None:
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.budget_s = 4 * timeout
        headers = {"User-Agent": USER_AGENT}
        retries = urllib3.Retry(total=0, redirect=3, raise_on_redirect=False)
        self.pool: urllib3.PoolManager
        if proxy is None:
            self.pool = urllib3.PoolManager(
                headers=headers, retries=retries, ssl_context=tls.client_context()
            )
        else:
            auth = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
            self.pool = urllib3.ProxyManager(
                proxy.url,
                headers=headers,
                proxy_headers=auth,
                retries=retries,
                ssl_context=tls.client_context(),
            )

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.pool.request("GET", url, preload_content=False, timeout=self.timeout)
        except urllib3.exceptions.MaxRetryError as err:
            if isinstance(err.reason, urllib3.exceptions.TimeoutError):
                raise SlowRetrievalError(f"{url}: {err.reason}") from err
            raise DownloadError(f"{url}: {err.reason}") from err
        except urllib3.exceptions.HTTPError as err:
            raise DownloadError(f"{url}: {err}") from err
        if response.status >= 400:
            _give_back(response, read_to_end=False)
            raise DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return self._body(response)

    def _body(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        # urllib3's read timeout bounds each read, and a read of n bytes waits for all n, so a
        # server trickling a byte now and then would hold a whole document (python-tuf caps
        # its length) for hours. read1 returns what has arrived, so the deadline (the budget
        # plus the bytes so far at MIN_RATE) is checked after every piece.
        started, received, complete = time.monotonic(), 0, False
        try:
            while piece := response.read1(_READ):
                received += len(piece)
                if time.monotonic() - started > self.budget_s + received / MIN_RATE:
                    raise SlowRetrievalError(
                        f"{response.geturl()}: answer not complete within its deadline"
                    )
                yield piece
            complete = True
        except urllib3.exceptions.ReadTimeoutError as err:
            raise SlowRetrievalError(str(err)) from err
        except urllib3.exceptions.HTTPError as err:
            raise DownloadError(str(err)) from err
        finally:
            _give_back(response, read_to_end=complete)


def _give_back(response: urllib3.BaseHTTPResponse, *, read_to_end: bool) -> None:
    """Return the connection to the pool, closed unless its answer was read to the end: the
    unread rest of an answer (a 404's body, a document refused halfway) would otherwise be
    read as the head of the next answer on that connection. Draining it instead would read
    as much as a hostile server sends."""
    if not read_to_end:
        response.close()
    response.release_conn()
