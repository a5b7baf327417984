"""The device's one TLS client context: the system CA store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
honoured), loaded once and shared by the Overlord client, the chunk pipeline and the TUF
fetcher. Each context holds its own parsed copy of the CA store (about 1-2 MiB), which counts
on a device whose agent must stay under 64 MiB.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_context() -> ssl.SSLContext:
    return ssl.create_default_context()
