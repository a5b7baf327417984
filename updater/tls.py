"""The device's TLS client context: the system CA store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
honoured), loaded once and shared by the Overlord client, the chunk pipeline and the TUF
fetcher. Each context holds its own parsed copy of the CA store (about 1-2 MiB), which counts
on a device whose agent must stay under 64 MiB. A change of those variables gets a new one.
"""

from __future__ import annotations

import functools
import os
import ssl


def client_context() -> ssl.SSLContext:
    return _context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()  # reads the two variables itself
